"""Writing benchmark tables into bench/README.md (between <!-- name:start --> / <!-- name:end -->
markers), raw results into bench/results/ and figures into bench/plots/."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

HERE = pathlib.Path(__file__).parent
README = HERE / "README.md"
RESULTS = HERE / "results"
PLOTS = HERE / "plots"


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip() + "\n\n" + block + "\n"


def write_section(name: str, body: str) -> None:
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    README.write_text(replace_section(text, name, body))


def results_path(name: str) -> pathlib.Path:
    """Where a benchmark's raw results live (bench/results/<name>.json)."""
    return RESULTS / f"{name}.json"


def write_results(name: str, results: Any) -> pathlib.Path:
    RESULTS.mkdir(exist_ok=True)
    path = results_path(name)
    path.write_text(json.dumps(results, indent=1, default=str))
    return path


def plot_path(name: str) -> pathlib.Path:
    """Where a figure goes (bench/plots/<name>.png); link it from README.md as plots/<name>.png."""
    PLOTS.mkdir(exist_ok=True)
    return PLOTS / f"{name}.png"
