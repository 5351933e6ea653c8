"""Hugging Face model directories as ``sparsecodec compress`` input, and calibration text for them.

A directory holding ``config.json`` and ``*.safetensors`` weights is built with transformers'
``AutoModel.from_pretrained`` (offline: ``local_files_only=True``, float32, eval mode), so its
Linear and Embedding layers are compressed as what they are. Calibration text (one sample per
non-empty line) is tokenised with the directory's own tokenizer into batches of model inputs, the
``calibration`` argument of :func:`sparsecodec.compress_`.

transformers is an optional dependency (``pip install sparsecodec[models]``); it is imported only
here, when such a directory is given (torch too: the command-line parser imports this module).
"""

from __future__ import annotations

import inspect
import pathlib
from typing import TYPE_CHECKING, Any

from .errors import CLIError, first_line

if TYPE_CHECKING:  # the parser imports this module: torch and transformers only once a directory is read
    import torch
    from torch import nn

#: The extra that installs transformers.
INSTALL_HINT = "pip install 'sparsecodec[models]'"
#: Calibration lines per batch.
CALIBRATION_BATCH_SIZE = 16
#: Longest calibration sample, in tokens (shorter when the model's own limit is lower).
CALIBRATION_MAX_TOKENS = 256


def is_model_dir(path: pathlib.Path) -> bool:
    """Whether ``path`` is a directory with a ``config.json`` (a Hugging Face model directory; its
    weights are checked by :func:`load_pretrained`)."""
    return path.is_dir() and (path / "config.json").is_file()


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise CLIError(f"reading a Hugging Face model directory needs transformers: {INSTALL_HINT}") from None
    return transformers


def load_pretrained(directory: pathlib.Path) -> nn.Module:
    """The directory's model as ``AutoModel.from_pretrained`` builds it, offline, in float32 and eval
    mode. Raises :class:`CLIError` when transformers is missing, the directory has no safetensors
    weights or transformers cannot build the model."""
    transformers = _transformers()
    if not any(directory.glob("*.safetensors")):
        raise CLIError(f"{directory} has a config.json but no *.safetensors weights")
    logging = transformers.utils.logging
    bar_was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # the command draws its own progress
    try:
        model = transformers.AutoModel.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise CLIError(f"transformers cannot build the model in {directory}: {first_line(exc)}") from None
    finally:
        if bar_was_on:
            logging.enable_progress_bar()
    return model.float().eval()


def load_hint(directory: pathlib.Path, output: pathlib.Path) -> str:
    """The Python line that loads a compressed file into a fresh model of ``directory``."""
    return (
        f"sparsecodec.load({str(output)!r}, transformers.AutoModel.from_config("
        f"transformers.AutoConfig.from_pretrained({str(directory)!r})))"
    )


def read_samples(text_file: pathlib.Path) -> list[str]:
    """The calibration samples of a text file: one per non-empty line, stripped."""
    try:
        text = text_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CLIError(f"--calibration {text_file}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"--calibration {text_file} is a directory, not a text file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"--calibration {text_file} cannot be read as UTF-8 text: {first_line(exc)}") from None
    samples = [line.strip() for line in text.splitlines() if line.strip()]
    if not samples:
        raise CLIError(f"--calibration {text_file} holds no text (one calibration sample per non-empty line)")
    return samples


def load_tokenizer(directory: pathlib.Path) -> Any:
    """The directory's tokenizer (``AutoTokenizer``, offline), given a padding token if it has none
    (the end-of-sequence token: padded positions are masked out of the statistics anyway)."""
    transformers = _transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CLIError(
            f"{directory} has no tokenizer to tokenise --calibration with (tokenizer.json or vocabulary files): "
            f"{first_line(exc)}"
        ) from None
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):  # transformers builds one from config.json alone
        raise CLIError(
            f"{directory} has no tokenizer to tokenise --calibration with: no tokenizer.json or vocabulary files "
            f"(the {type(tokenizer).__name__} built without them knows only its special tokens)"
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CLIError(f"the tokenizer of {directory} has neither a padding nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def calibration_batches(
    tokenizer: Any,
    samples: list[str],
    model: nn.Module,
    *,
    batch_size: int = CALIBRATION_BATCH_SIZE,
) -> list[dict[str, torch.Tensor]]:
    """``samples`` tokenised in batches of ``batch_size``
    (:func:`sparsecodec.models.text_batches.tokenized_batches`: padded, cut at :func:`max_tokens`):
    one dict of model inputs per batch (``input_ids``, ``attention_mask``, ``token_type_ids`` ...,
    only those the model's forward takes)."""
    from ..models.text_batches import tokenized_batches

    accepted = _forward_arguments(model)
    batches = tokenized_batches(tokenizer, samples, batch_size, max_tokens(model, tokenizer))
    return [{k: v for k, v in batch.items() if accepted is None or k in accepted} for batch in batches]


def max_tokens(model: nn.Module, tokenizer: Any) -> int:
    """The length calibration samples are cut at: :data:`CALIBRATION_MAX_TOKENS`, or less when the
    model's positions (``max_position_embeddings``) or the tokenizer's ``model_max_length`` are fewer."""
    limits = [CALIBRATION_MAX_TOKENS]
    for value in (getattr(getattr(model, "config", None), "max_position_embeddings", None), tokenizer.model_max_length):
        if isinstance(value, int) and value > 0:
            limits.append(value)
    return min(limits)


def _forward_arguments(model: nn.Module) -> set[str] | None:
    """The keyword arguments the model's forward names, or None when it takes ``**kwargs`` too."""
    params = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}
