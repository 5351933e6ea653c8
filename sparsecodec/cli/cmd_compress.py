"""``sparsecodec compress IN -o OUT``: compress a torch model or a weights file into a sparsecodec model
file (safetensors, readable with ``sparsecodec.load`` and ``sparsecodec inspect``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
from typing import Any

from ..options import STRATEGIES, mask_formats, methods, scale_dtypes
from .errors import CLIError, first_line

# SQConfig fields settable from the command line: flag -> add_argument keywords (dest is the field).
CONFIG_FLAGS: dict[str, dict[str, Any]] = {
    "--sparsity": {
        "dest": "sparsity",
        "type": float,
        "metavar": "S",
        "help": "share of weights pruned by magnitude (default 0.9)",
    },
    "--bits": {"dest": "bits", "type": int, "metavar": "Q", "help": "BCQ bit-planes, 1-8 (default 2)"},
    "--mask-format": {
        "dest": "mask_format",
        "choices": mask_formats(),
        "help": "keep-mask format (default: none when nothing is pruned, else bitmap)",
    },
    "--rank": {"dest": "rank", "type": int, "metavar": "K", "help": "rank per tile of a lowrank mask"},
    "--tile": {
        "dest": "tile",
        "metavar": "RxC",
        "help": "tile of a lowrank mask, e.g. 256x256 (default: whole matrix)",
    },
    "--group-size": {
        "dest": "group_size",
        "type": int,
        "metavar": "N",
        "help": "columns sharing one set of scales (default: whole rows)",
    },
    "--method": {"dest": "method", "choices": methods(), "help": "how the kept weights are fitted (default greedy)"},
    "--depth": {"dest": "depth", "type": int, "metavar": "D", "help": "XOR shift-register depth, 1-4 (default 2)"},
    "--scale-dtype": {"dest": "scale_dtype", "choices": scale_dtypes(), "help": "scale type (default float16)"},
    "--strategy": {"dest": "strategy", "choices": STRATEGIES, "help": "matmul kernel of the layers (default auto)"},
    "--seed": {"dest": "seed", "type": int, "metavar": "N", "help": "seed of the XOR network (default 0)"},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compress",
        help="compress a torch model or a weights file into a sparsecodec model file",
        description="Compress every Linear and Conv2d layer of a model (sparsecodec.compress_) and write the "
        "result with sparsecodec.save. IN is a torch.save'd module (needs --trust-pickle), a torch.save'd "
        "state_dict or a safetensors file with --model building its module, or such weights alone: then "
        "every 2-D '*.weight' tensor is compressed as a linear layer's weight and the rest is kept.",
        epilog="Load the result with sparsecodec.load(OUT, YourModel()); describe it with 'sparsecodec inspect OUT'.",
    )
    parser.add_argument("input", metavar="IN", help="a .pt/.pth (torch.save) or .safetensors file")
    parser.add_argument("-o", "--output", metavar="OUT", required=True, help="the compressed model file to write")
    parser.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="a callable building the module the weights of IN belong to, e.g. mypkg.nets:make_cnn",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow IN to be a pickled module (unpickling runs code from the file)",
    )
    parser.add_argument(
        "--exclude",
        metavar="REGEX",
        action="append",
        default=[],
        help="keep layers whose whole name matches REGEX dense (repeatable), e.g. 'fc2|conv1'",
    )
    settings = parser.add_argument_group("compression settings (default: sparsecodec.SQConfig())")
    settings.add_argument(
        "--config",
        metavar="FILE",
        help="a JSON SQConfig, or a JSON object mapping layer names "
        "('re:<regex>' patterns, '_default') to SQConfigs or null; not with the flags below",
    )
    for flag, keywords in CONFIG_FLAGS.items():
        settings.add_argument(flag, default=None, **keywords)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> Any:
    """The ``config`` argument of ``compress_`` that the flags or ``--config`` describe."""
    from ..config import SQConfig

    fields = {flag: keywords["dest"] for flag, keywords in CONFIG_FLAGS.items()}
    given = {field: getattr(args, field) for field in fields.values() if getattr(args, field) is not None}
    if args.config and given:
        flags = ", ".join(flag for flag, field in fields.items() if field in given)
        raise CLIError(f"--config cannot be combined with {flags}", 2)
    if args.config:
        return _config_file(pathlib.Path(args.config))
    if "tile" in given:
        given["tile"] = _tile(given["tile"])
    try:
        return SQConfig(**given)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"invalid compression settings: {first_line(exc)}", 2) from None


def _tile(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*", text)
    if not match:
        raise CLIError(f"--tile must look like 256x256, got {text!r}", 2)
    return int(match[1]), int(match[2])


def _config_file(path: pathlib.Path) -> Any:
    from ..config import SQConfig

    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CLIError(f"{path} is not valid JSON: {exc}") from None

    def one(d: Any) -> SQConfig | None:
        if d is None:
            return None
        if not isinstance(d, dict):
            raise CLIError(f"{path}: expected an SQConfig object or null, got {json.dumps(d)[:40]}")
        return SQConfig.from_dict({"type": "SQConfig", **d})

    if not isinstance(data, dict):
        raise CLIError(f"{path}: expected a JSON object, got {type(data).__name__}")
    try:
        if set(data) <= {f.name for f in dataclasses.fields(SQConfig)} | {"type"}:
            return one(data)  # one config for every layer
        return {name: one(d) for name, d in data.items()}
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{path}: invalid SQConfig: {first_line(exc)}") from None


def run(args: argparse.Namespace) -> int:
    src, out = pathlib.Path(args.input), pathlib.Path(args.output)
    config = config_from_args(args)
    excluded = [_regex(r) for r in args.exclude]
    if out.resolve() == src.resolve():
        raise CLIError("OUT is the input file; choose another name", 2)

    from .. import compress_, save
    from ..inspection import summarize_model
    from .console import make_console
    from .model_input import load_model
    from .progress import ProgressExecutor, progress_bar
    from .tables import layer_table, plural, size_text

    console = make_console()
    loaded = load_model(src, args.model, args.trust_pickle)
    console.print(f"{src}: {loaded.description}")
    model = loaded.model

    def keep(module: Any, name: str) -> bool:
        return not any(r.fullmatch(name) for r in excluded)

    with progress_bar(console) as bar:
        task = bar.add_task("encoding weight matrices", total=_matrix_count(model))

        def advance() -> None:
            bar.advance(task)
            done = bar.tasks[0].completed
            if done > (bar.tasks[0].total or 0):
                bar.update(task, total=done)

        try:
            report = compress_(model, config, keep, executor=ProgressExecutor(advance))
        except (TypeError, ValueError) as exc:
            raise CLIError(f"cannot compress {src}: {first_line(exc)}") from None
    if not report.converted:
        raise CLIError(f"no layer of {src} was compressed; " + _skip_text(report, loaded.notes, limit=3))

    out.parent.mkdir(parents=True, exist_ok=True)
    save(model, out)
    console.print(layer_table(summarize_model(model), f"Compressed {plural(len(report.converted), 'layer')}"))
    # Without a model, plain containers that merely hold a tensor named "weight" are no layers to list.
    skipped = [r for r in report.skipped if not loaded.weights_only or r.kind != "Module" or r.name in loaded.notes]
    if skipped:
        console.print("kept as they were:")
        for r in skipped:
            console.print(f"  {r.name}{'' if loaded.weights_only else f' ({r.kind})'}: {_reason(r, loaded.notes)}")
    before, after = src.stat().st_size, out.stat().st_size
    console.print(f"wrote {out} ({size_text(after)}; {src.name} is {size_text(before)}, {before / after:.1f}x larger)")
    loader = "the module it came from" if loaded.weights_only else "a fresh instance of the model"
    console.print(f"load it with sparsecodec.load({str(out)!r}, model) on {loader}")
    return 0


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise CLIError(f"--exclude {pattern!r} is not a regular expression: {exc}", 2) from None


def _matrix_count(model: Any) -> int:
    """How many weight matrices compress_ will probably encode (one per group of a convolution); the
    bar corrects its total if the configuration skips or adds some."""
    from torch import nn

    from ..nn.registry import kind_of

    def count(m: Any) -> int:
        kind = kind_of(m)
        if kind is None or not kind.converts(m):
            return 0
        return m.groups if isinstance(m, nn.Conv2d) else 1

    return sum(count(m) for m in model.modules())


def _reason(layer: Any, notes: dict[str, str]) -> str:
    if layer.name in notes:
        return notes[layer.name]
    return "excluded by --exclude" if layer.reason == "excluded by filter_fn" else layer.reason


def _skip_text(report: Any, notes: dict[str, str], limit: int) -> str:
    reasons = [f"{r.name}: {_reason(r, notes)}" for r in report.skipped[:limit]]
    return "; ".join(reasons) if reasons else "it has no Linear or Conv2d layer"
