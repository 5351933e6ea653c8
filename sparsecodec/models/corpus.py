"""English sentences for calibration and evaluation, from text that ships with CPython.

The source is the Python reference manual: CPython bundles the text of its documentation topics
(the statements, the data model, the operators ... as rendered for ``help()``) in the standard
library as ``pydoc_data.topics.topics``, a dict from topic names to plain text. It is real,
edited English prose, it is present wherever Python is (no download, no extra package), and its
licence is CPython's own (PSF).

:func:`reference_sentences` cuts that text into sentences deterministically:

1. topics in sorted order; each topic's lines are grouped into blocks of consecutive non-blank lines
   of one indentation (so code samples, grammar rules and prose never run together); headings (a
   line underlined by ``***``, ``===``, ``---`` ...) and blocks with interpreter prompts (``>>>``,
   ``...``) or grammar rules (``::=``) are dropped;
2. whitespace is collapsed, ``**bold**`` markers and footnote marks (``[5]``) are removed, and each
   block is split after ``.``, ``!`` or ``?`` followed by a capital letter;
3. a sentence is kept if it starts with a capital letter, ends with ``.``, ``!`` or ``?``, has
   6..60 words, and reads as prose: few code symbols (``= ( ) [ ] { } < > * _ # @ ...``) and
   mostly plain words;
4. duplicates are removed and the sentences are ordered by a stable hash (SHA-1 of their UTF-8
   text), so the order does not follow the manual's topics;
5. every 4th sentence in that order (positions 0, 4, 8, ...) is a *calibration* sentence, the other
   three quarters are *held-out* sentences; the two parts are disjoint.

The result depends only on the text, so it is the same on every run and machine for a given
Python version. The documentation text changes between CPython versions (and occasionally between
patch releases), so the sentences themselves differ between versions; this is accepted: callers
(tests, benchmarks) rely on the counts and the disjointness, never on the exact sentences. Python
3.11 gives about 1360 sentences, about 1020 of them held out (1023 on 3.11.7, 1024 on 3.11.2).

:func:`prose_sentences` is the second source: 640 sentences of ordinary everyday English (cooking,
travel, weather, work, family ...) written for this project and kept in ``prose.txt`` beside this
module, split into even (calibration) and odd (held-out) lines. Technical manual text and everyday
prose differ, which is how the benchmarks show the effect of the calibration source.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
import re

SPLITS = ("calibration", "heldout")
MIN_WORDS, MAX_WORDS = 6, 60
CALIBRATION_EVERY = 4  # position % 4 == 0 -> calibration

_UNDERLINE = re.compile(r"^([*=\-~^#+\"'`.])\1{2,}$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_SYMBOLS = set("=()[]{}<>*_#@$%^&|\\/~+`;")
_WORD = re.compile(r"^[(\"'“‘]?[A-Za-z][A-Za-z'’\-]*[)\"'”’]?[.,;:!?]?$")


def reference_sentences(n: int | None = None, *, split: str = "heldout") -> list[str]:
    """The first ``n`` sentences (all with ``None``) of one part of the corpus: ``"calibration"``
    (a quarter of the sentences) or ``"heldout"`` (the other three quarters, disjoint from it).

    Deterministic for a given Python version; see the module docstring for where the text comes
    from and how it is cut. Raises ValueError for an unknown split, or if ``n`` is negative or more
    than the part has.
    """
    _check_split(split)
    return _first(_parts()[SPLITS.index(split)], n, f"the {split} part on this Python")


#: Ordinary English prose written for this project (640 sentences on everyday topics, one per line).
PROSE_FILE = pathlib.Path(__file__).with_name("prose.txt")


def prose_sentences(n: int | None = None, *, split: str = "heldout") -> list[str]:
    """The first ``n`` sentences (all with ``None``) of one half of the project's own everyday prose
    (``prose.txt`` beside this module, written for sparsecodec): ``"calibration"`` takes the even
    lines, ``"heldout"`` the odd ones, so both halves cover every topic. Ordinary prose, unlike the
    reference manual, is what a calibration set usually looks like."""
    _check_split(split)
    lines = _prose_lines()
    return _first(lines[0::2] if split == "calibration" else lines[1::2], n, f"the {split} half of the prose")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _first(part: tuple[str, ...], n: int | None, what: str) -> list[str]:
    """The first ``n`` sentences of ``part`` (all with None), with a clear error for a bad ``n``."""
    if n is None:
        return list(part)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer or None, got {n!r}")
    if n > len(part):
        raise ValueError(f"{what} has {len(part)} sentences, {n} were asked for")
    return list(part[:n])


@functools.lru_cache(maxsize=1)
def _prose_lines() -> tuple[str, ...]:
    return tuple(line.strip() for line in PROSE_FILE.read_text(encoding="utf-8").splitlines() if line.strip())


@functools.lru_cache(maxsize=1)
def _parts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    ordered = sorted(_all_sentences(), key=lambda s: hashlib.sha1(s.encode("utf-8")).hexdigest())
    calibration = tuple(s for i, s in enumerate(ordered) if i % CALIBRATION_EVERY == 0)
    heldout = tuple(s for i, s in enumerate(ordered) if i % CALIBRATION_EVERY != 0)
    return calibration, heldout


def _all_sentences() -> set[str]:
    from pydoc_data.topics import topics

    found: set[str] = set()
    for name in sorted(topics):
        for block in _prose_blocks(topics[name]):
            text = re.sub(r"\*\*(.+?)\*\*", r"\1", block)
            text = re.sub(r"\s*\[\d+\]", "", text)
            text = " ".join(text.split())
            for sentence in _SENTENCE_END.split(text):
                sentence = sentence.strip()
                if _is_prose(sentence):
                    found.add(sentence)
    return found


def _prose_blocks(text: str) -> list[str]:
    """Blocks of consecutive non-blank lines of one indentation, without headings, prompts and
    grammar rules."""
    lines = text.splitlines()
    blocks: list[list[str]] = []
    current: list[str] = []
    indent = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        is_heading = bool(stripped) and bool(_UNDERLINE.match(nxt))
        if not stripped or _UNDERLINE.match(stripped) or is_heading:
            if current:
                blocks.append(current)
            current, indent = [], None
            continue
        level = len(line) - len(line.lstrip())
        if indent is not None and level != indent:
            blocks.append(current)
            current = []
        current.append(stripped)
        indent = level
    if current:
        blocks.append(current)
    return [
        " ".join(b) for b in blocks if not any(ln.startswith((">>>", "...")) or "::=" in ln or ">>>" in ln for ln in b)
    ]


def _is_prose(sentence: str) -> bool:
    if not sentence or not sentence[0].isupper() or sentence[-1] not in ".!?":
        return False
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    symbols = sum(c in _SYMBOLS for c in sentence)
    if symbols > 4 or symbols > 0.03 * len(sentence):
        return False
    plain = sum(bool(_WORD.match(w)) for w in words)
    return plain >= 0.8 * len(words)
