"""The README's usage example runs as written, and its test command is the one CI runs."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_usage_examples_run():
    examples = _blocks("python")
    assert len(examples) >= 2
    for example in examples:
        if "torch" in example:
            pytest.importorskip("torch")
        exec(compile(example, "README.md", "exec"), {})


def test_ci_runs_the_readme_test_command():
    commands = "\n".join(_blocks("bash"))
    test_line = next(line for line in commands.splitlines() if "pytest" in line and not line.startswith("#"))
    assert test_line.strip() in (ROOT / ".ci" / "run").read_text()
