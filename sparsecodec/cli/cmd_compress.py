"""``sparsecodec compress IN -o OUT``: compress a Hugging Face model directory, a torch model or a
weights file into a sparsecodec model file (safetensors, readable with ``sparsecodec.load`` and
``sparsecodec inspect``). With ``--calibration`` (a Hugging Face directory only), text samples are
tokenised into the calibration batches GPTQ, Wanda and SparseGPT need."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
from typing import Any

from ..options import CALIBRATED_PRUNINGS, PRUNINGS, STRATEGIES, calibrated_methods, mask_formats, methods, scale_dtypes
from .errors import CLIError, first_line
from .hf_model import CALIBRATION_BATCH_SIZE

# SQConfig fields settable from the command line: flag -> add_argument keywords (dest is the field).
CONFIG_FLAGS: dict[str, dict[str, Any]] = {
    "--sparsity": {
        "dest": "sparsity",
        "type": float,
        "metavar": "S",
        "help": "share of weights pruned (default 0.9)",
    },
    "--pruning": {
        "dest": "pruning",
        "choices": PRUNINGS,
        "help": "how the pruned weights are chosen (default magnitude; "
        f"{' and '.join(CALIBRATED_PRUNINGS)} need --calibration)",
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
    "--method": {
        "dest": "method",
        "choices": methods(),
        "help": "how the kept weights are fitted (default greedy; "
        f"{', '.join(calibrated_methods()) or 'calibrated methods'} need --calibration)",
    },
    "--depth": {"dest": "depth", "type": int, "metavar": "D", "help": "XOR shift-register depth, 1-4 (default 2)"},
    "--scale-dtype": {"dest": "scale_dtype", "choices": scale_dtypes(), "help": "scale type (default float16)"},
    "--strategy": {"dest": "strategy", "choices": STRATEGIES, "help": "matmul kernel of the layers (default auto)"},
    "--seed": {"dest": "seed", "type": int, "metavar": "N", "help": "seed of the XOR network (default 0)"},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compress",
        help="compress a Hugging Face model directory, a torch model or a weights file into a sparsecodec model file",
        description="Compress every Linear, Conv2d and Embedding layer of a model (sparsecodec.compress_) and "
        "write the result with sparsecodec.save. IN is a Hugging Face model directory (config.json and "
        "*.safetensors, built with transformers' AutoModel, offline), a torch.save'd module (needs "
        "--trust-pickle), a torch.save'd state_dict or a safetensors file with --model building its module, "
        "or such weights alone: then every 2-D '*.weight' tensor is compressed as a linear layer's weight "
        "and the rest is kept.",
        epilog="Load the result with sparsecodec.load(OUT, YourModel()) (for a Hugging Face directory: "
        "sparsecodec.load(OUT, AutoModel.from_config(AutoConfig.from_pretrained(IN)))); describe it with "
        "'sparsecodec inspect OUT'.",
    )
    parser.add_argument(
        "input",
        metavar="IN",
        help="a Hugging Face model directory, or a .pt/.pth (torch.save) or .safetensors file",
    )
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
    parser.add_argument(
        "--calibration",
        metavar="FILE.txt",
        help="calibration text, one sample per non-empty line, tokenised with IN's tokenizer in batches of "
        f"{CALIBRATION_BATCH_SIZE} (IN must be a Hugging Face model directory); needed by calibrated methods "
        "and prunings",
    )
    parser.add_argument(
        "--blocks",
        metavar="NAME",
        help="with --calibration: the module list whose blocks are calibrated one after another "
        "(default: found by sparsecodec.compress_), e.g. encoder.layer",
    )
    parser.add_argument(
        "--sparsity-scope",
        choices=("layer", "model"),
        default="layer",
        help="with --calibration: prune --sparsity of every layer (layer, the default) or of all the layers' "
        "weights together, each layer as much as its measured sensitivity allows (model)",
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
    samples = tokenizer = None
    if args.blocks is not None and args.calibration is None:
        raise CLIError("--blocks only applies with --calibration (blocks are calibrated one after another)", 2)
    if args.calibration is not None:
        from .hf_model import is_model_dir, load_tokenizer, read_samples

        if not is_model_dir(src):
            raise CLIError("--calibration needs IN to be a Hugging Face model directory (its tokenizer reads the text)")
        samples = read_samples(pathlib.Path(args.calibration))
        tokenizer = load_tokenizer(src)  # before the model: a missing tokenizer is found at once
    else:
        _refuse_uncalibrated(config)

    from .. import compress_, save
    from ..inspection import summarize_model
    from .console import make_console
    from .model_input import load_model
    from .progress import layer_progress
    from .tables import layer_table, plural, size_text

    console = make_console()
    loaded = load_model(src, args.model, args.trust_pickle)
    console.print(f"{src}: {loaded.description}")
    model = loaded.model
    calibration = None
    if samples is not None:
        from .hf_model import calibration_batches

        calibration = calibration_batches(tokenizer, samples, model)
        console.print(f"calibration: {plural(len(samples), 'sample')} in {plural(len(calibration), 'batch')}")

    def keep(module: Any, name: str) -> bool:
        return not any(r.fullmatch(name) for r in excluded)

    with layer_progress(console, "compressing layers") as progress:
        try:
            report = compress_(
                model,
                config,
                keep,
                calibration=calibration,
                blocks=args.blocks,
                progress=progress,
                sparsity_scope=args.sparsity_scope,
            )
        except (TypeError, ValueError) as exc:
            raise CLIError(f"cannot compress {src}: {first_line(exc)}") from None
    if not report.converted:
        raise CLIError(f"no layer of {src} was compressed; " + _skip_text(report, loaded.notes, limit=3))

    if report.budget is not None:
        console.print(str(report.budget))
    out.parent.mkdir(parents=True, exist_ok=True)
    save(model, out)
    console.print(layer_table(summarize_model(model), f"Compressed {plural(len(report.converted), 'layer')}"))
    # Without a model, plain containers that merely hold a tensor named "weight" are no layers to list.
    skipped = [r for r in report.skipped if not loaded.weights_only or r.kind != "Module" or r.name in loaded.notes]
    if skipped:
        console.print("kept as they were:")
        for line in _skipped_lines(skipped, loaded.notes, with_kind=not loaded.weights_only):
            console.print(f"  {line}")
    before, after = _input_bytes(src), out.stat().st_size
    console.print(f"wrote {out} ({size_text(after)}; {src.name} is {size_text(before)}, {before / after:.1f}x larger)")
    if loaded.pretrained_dir is not None:
        from .hf_model import load_hint

        console.print(f"load it with {load_hint(loaded.pretrained_dir, out)}")
    else:
        loader = "the module it came from" if loaded.weights_only else "a fresh instance of the model"
        console.print(f"load it with sparsecodec.load({str(out)!r}, model) on {loader}")
    return 0


def _refuse_uncalibrated(config: Any) -> None:
    """A CLIError naming --calibration when a method or pruning of ``config`` needs calibration data
    (checked before the model is read, so the user learns it at once)."""
    configs = config.values() if isinstance(config, dict) else [config]
    for cfg in configs:
        if cfg is not None and cfg.needs_calibration:
            needs = f"--method {cfg.method}" if cfg.method in calibrated_methods() else f"--pruning {cfg.pruning}"
            raise CLIError(
                f"{needs} needs calibration data: pass --calibration FILE.txt (one text sample per line) "
                "with a Hugging Face model directory as IN",
                2,
            )


def _input_bytes(src: pathlib.Path) -> int:
    """The size of the input: the file, or a model directory's weight files."""
    if src.is_dir():
        return sum(f.stat().st_size for f in src.glob("*.safetensors"))
    return src.stat().st_size


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise CLIError(f"--exclude {pattern!r} is not a regular expression: {exc}", 2) from None


def _skipped_lines(skipped: list[Any], notes: dict[str, str], with_kind: bool, limit: int = 3) -> list[str]:
    """One line per skipped layer, except that more than ``limit`` layers skipped for one reason (the
    LayerNorms of a transformer) share a line naming the first and the last of them."""
    by_reason: dict[str, list[Any]] = {}
    for r in skipped:
        by_reason.setdefault(_reason(r, notes), []).append(r)
    lines = []
    for reason, layers in by_reason.items():
        if len(layers) > limit:
            kinds = sorted({r.kind for r in layers})
            what = f"{' / '.join(kinds)} layers" if with_kind else "layers"
            lines.append(f"{len(layers)} {what} ({layers[0].name} ... {layers[-1].name}): {reason}")
        else:
            lines.extend(f"{r.name}{f' ({r.kind})' if with_kind else ''}: {reason}" for r in layers)
    return lines


def _reason(layer: Any, notes: dict[str, str]) -> str:
    if layer.name in notes:
        return notes[layer.name]
    return "excluded by --exclude" if layer.reason == "excluded by filter_fn" else layer.reason


def _skip_text(report: Any, notes: dict[str, str], limit: int) -> str:
    reasons = [f"{r.name}: {_reason(r, notes)}" for r in report.skipped[:limit]]
    return "; ".join(reasons) if reasons else "it has no Linear or Conv2d layer"
