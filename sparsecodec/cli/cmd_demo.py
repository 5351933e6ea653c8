"""``sparsecodec demo``: the main job on the bundled example (see :mod:`sparsecodec.cli.demo_job`)."""

from __future__ import annotations

import argparse
import pathlib

from .errors import CLIError


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="compress a small CNN trained on scikit-learn's digits and report (about a minute)",
        description="Train a small CNN on scikit-learn's digits (cached in the output folder after the first "
        "run), fine-tune it briefly with DeepTwist, compress it with sparsecodec.compress_, save and reload it, "
        "and report per-layer bits per weight, test accuracy before and after, latency against the dense model, "
        "and a PNG figure. Needs torch, scikit-learn and matplotlib: pip install 'sparsecodec[demo]'.",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("sparsecodec-demo"),
        help="folder for the compressed model, the figure and the cached dense model (default: ./sparsecodec-demo)",
    )
    parser.add_argument("--epochs", type=_positive, default=15, help="dense training epochs (default 15)")
    parser.add_argument(
        "--finetune-epochs",
        type=_positive,
        default=20,
        help="DeepTwist fine-tuning epochs; 0 compresses the dense model as it is (default 20)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split and training (default 0)")
    parser.add_argument("--retrain", action="store_true", help="train the dense model again even if cached")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG figure")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.epochs == 0:
        raise CLIError("--epochs must be at least 1", 2)
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise CLIError(
            f"the demo needs torch and scikit-learn ({exc.name} is missing): "
            "pip install torch==2.13.0 && pip install 'sparsecodec[demo]'"
        ) from None
    from .console import make_console
    from .demo_job import DemoOptions, run_demo

    options = DemoOptions(args.out, args.epochs, args.finetune_epochs, args.seed, args.retrain, not args.no_plot)
    return run_demo(options, make_console())
