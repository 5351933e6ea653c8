"""Calibration batches from text: sentences tokenised by a Hugging Face tokenizer into the
keyword-argument dicts a transformers model takes (``input_ids``, ``attention_mask`` ...).

``compress_(model, config, calibration=tokenized_batches(tokenizer, sentences))`` then calibrates on
them; padding positions are excluded from the statistics through the ``attention_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Sentences per calibration batch, and the longest input kept (tokens).
DEFAULT_BATCH = 16
DEFAULT_MAX_LENGTH = 256


def tokenized_batches(
    tokenizer: Any, sentences: Sequence[str], batch_size: int = DEFAULT_BATCH, max_length: int = DEFAULT_MAX_LENGTH
) -> list[dict[str, Any]]:
    """Tokenise ``sentences`` in batches of ``batch_size`` (padded to each batch's longest, cut at
    ``max_length`` tokens); sentences of similar length are batched together to waste less padding."""
    if isinstance(sentences, str):
        raise TypeError("sentences must be a sequence of strings, not one string")
    texts = [s for s in sentences if isinstance(s, str) and s.strip()]
    if len(texts) != len(sentences):
        raise ValueError("every calibration sentence must be a non-empty string")
    if not texts:
        raise ValueError("no calibration sentences")
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"batch_size and max_length must be >= 1, got {batch_size} and {max_length}")
    texts.sort(key=len)
    return [
        dict(
            tokenizer(
                texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
        )
        for i in range(0, len(texts), batch_size)
    ]
