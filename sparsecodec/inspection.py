"""What a compressed model holds, layer by layer: format, shape, sparsity, bits per weight split into
values / patches / mask / scales, and the stream format versions.

:func:`inspect_file` reads a model file written by :func:`sparsecodec.save` (or a single ``.spcx``
stream) without building the model and without torch: every stream is parsed, so each one's CRC32
is verified, and a damaged, truncated or foreign file raises a ``ValueError`` naming the problem.
:func:`summarize_model` gives the same rows for a live torch model.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .formats.stream import MAGIC, peek_header
from .formats.xor_codec import EncodedWeight

#: Bits-per-weight components of a compressed layer, in display order.
COMPONENTS = ("values", "patches", "mask", "scales")
_STAT_KEYS = {"values": "values_bpw", "patches": "patch_bpw", "mask": "mask_bpw", "scales": "scale_bpw"}

# What sparsecodec.save writes into the safetensors metadata (sparsecodec/serialization.py imports
# these, so that reading a file here needs no torch).
FILE_FORMAT = "sparsecodec-model"
#: The newest model-file version this package reads. 2 adds :data:`TENSOR_ALIASES_KEY` (tied weights
#: stored once); a file without aliases is still written as version 1, so older readers read it.
FILE_FORMAT_VERSION = 2

# Metadata entry: a JSON object {tensor name: CRC32 of the tensor's bytes as stored}. Streams carry
# their own CRC32; this covers the other tensors (biases, layers kept dense). Written by
# sparsecodec.save (files from before it was added have none).
TENSOR_CRC_KEY = "tensor_crc32"

# Metadata entry (file version 2): a JSON object {state_dict key: stored tensor name} for state_dict
# entries that are the same tensor as another one (a weight tied between an embedding and an LM
# head), stored once under the first name.
TENSOR_ALIASES_KEY = "tensor_aliases"

# safetensors dtype names -> (torch's name, bits per element), for layers kept dense.
_DTYPES = {
    "F64": ("float64", 64),
    "F32": ("float32", 32),
    "F16": ("float16", 16),
    "BF16": ("bfloat16", 16),
    "I64": ("int64", 64),
    "I32": ("int32", 32),
    "I16": ("int16", 16),
    "I8": ("int8", 8),
    "U8": ("uint8", 8),
}


@dataclass(frozen=True)
class LayerSummary:
    """One layer's weight: compressed (``bits`` has the four components) or dense (``bits == {}``)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    weights: int
    format: str
    sparsity: float
    bits: dict[str, float]
    total_bpw: float
    stream_versions: tuple[int, ...] = ()

    @property
    def compressed(self) -> bool:
        return bool(self.bits)


@dataclass(frozen=True)
class FileSummary:
    """The layers of one file, its container kind and version, its size on disk, and how many tensors
    outside the streams were verified against checksums in the metadata (0 when it has none)."""

    path: str
    container: str
    file_version: int | None
    layers: list[LayerSummary]
    file_bytes: int
    checksummed_tensors: int = 0


def compressed_layer(name: str, kind: str, shape: Sequence[int], streams: Sequence[bytes]) -> LayerSummary:
    """Summarise a layer held as one or more streams (a grouped convolution has one per group).

    Parsing each stream verifies its CRC32; a damaged one raises :class:`sparsecodec.StreamError`.
    """
    encs = [EncodedWeight.from_bytes(s) for s in streams]
    versions = tuple(int(peek_header(s)["format_version"]) for s in streams)
    n = sum(e.size for e in encs)
    stats = [e.stats for e in encs]

    def mean(key: str) -> float:
        return sum(s[key] * e.size for s, e in zip(stats, encs, strict=True)) / n

    first = encs[0]
    mask_formats = sorted({e.mask.format_id for e in encs})
    fmt = f"XOR {first.bits}-bit + {'/'.join(mask_formats)}"
    bits = {c: mean(_STAT_KEYS[c]) for c in COMPONENTS}
    return LayerSummary(name, kind, tuple(shape), n, fmt, mean("sparsity"), bits, mean("total_bpw"), versions)


def dense_layer(name: str, kind: str, shape: Sequence[int], dtype_bits: int, dtype_name: str) -> LayerSummary:
    weights = math.prod(int(d) for d in shape)
    return LayerSummary(name, kind, tuple(shape), weights, f"dense {dtype_name}", 0.0, {}, float(dtype_bits))


def totals(layers: Iterable[LayerSummary]) -> dict[str, float]:
    """Weight counts and weighted bits per weight over the compressed layers and over all layers."""
    layers = list(layers)
    comp = [r for r in layers if r.compressed]
    n_comp = sum(r.weights for r in comp)
    n_all = sum(r.weights for r in layers)
    out: dict[str, float] = {"compressed_weights": n_comp, "all_weights": n_all}
    for c in COMPONENTS:
        out[c] = sum(r.bits[c] * r.weights for r in comp) / n_comp if n_comp else float("nan")
    out["compressed_bpw"] = sum(r.total_bpw * r.weights for r in comp) / n_comp if n_comp else float("nan")
    out["all_bpw"] = sum(r.total_bpw * r.weights for r in layers) / n_all if n_all else float("nan")
    return out


# -------------------------------------------------------------------------------------------------
def inspect_file(path: str | os.PathLike) -> FileSummary:
    """Summarise a sparsecodec model file or a single stream file, verifying every stream."""
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory, not a file")
    with p.open("rb") as f:
        head = f.read(len(MAGIC))
    size = p.stat().st_size
    if head == MAGIC:
        data = p.read_bytes()
        layer = compressed_layer(p.stem, "stream", EncodedWeight.from_bytes(data).shape, [data])
        return FileSummary(str(p), "sparsecodec stream (.spcx)", layer.stream_versions[0], [layer], size)
    return _inspect_model_file(p, size)


def _inspect_model_file(p: pathlib.Path, size: int) -> FileSummary:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ImportError("reading model files needs safetensors: pip install 'sparsecodec[torch]'") from None
    try:
        handle = safe_open(str(p), framework="numpy")
    except Exception as exc:  # safetensors has its own error types for foreign or damaged files
        raise ValueError(f"{p} is not a readable sparsecodec file (model or stream): {_first_line(exc)}") from None
    with handle as f:
        meta = f.metadata() or {}
        if meta.get("format") != FILE_FORMAT:
            raise ValueError(f"{p} is a safetensors file but not a sparsecodec model (no sparsecodec metadata)")
        version = _int_or_none(meta.get("format_version"))
        if version is None or version > FILE_FORMAT_VERSION:
            raise ValueError(
                f"{p} has model-file version {meta.get('format_version')!r}; this sparsecodec reads up to "
                f"{FILE_FORMAT_VERSION}"
            )
        try:
            specs = json.loads(meta.get("compressed_modules", "{}"))
        except json.JSONDecodeError:
            raise ValueError(f"{p} is damaged: its metadata is not valid JSON") from None
        keys = set(f.keys())
        layers: list[LayerSummary] = []
        stream_keys: set[str] = set()
        for name, spec in specs.items():
            prefix = f"{name}." if name else ""
            groups = int(spec.get("groups", 1))
            names = [prefix + ("encoded" if groups == 1 else f"encoded{i}") for i in range(groups)]
            missing = [k for k in names if k not in keys]
            if missing:
                raise ValueError(f"{p} is damaged: tensor {missing[0]!r} of layer {name!r} is missing")
            stream_keys.update(names)
            streams = [f.get_tensor(k).tobytes() for k in names]
            try:
                layer = compressed_layer(name, spec.get("class", "?"), _spec_shape(spec, streams), streams)
            except ValueError as exc:
                raise ValueError(f"{p} is damaged: layer {name!r}: {exc}") from None
            layers.append(layer)
        for key in sorted(keys - stream_keys):
            sl = f.get_slice(key)
            shape = tuple(sl.get_shape())
            if key.rpartition(".")[2] == "weight" and len(shape) >= 2:
                dtype, bits = _DTYPES.get(sl.get_dtype(), (sl.get_dtype(), 32))
                layers.append(dense_layer(key.rpartition(".")[0], "dense", shape, bits, dtype))
    order = {name: i for i, name in enumerate(_module_order(keys))}
    layers.sort(key=lambda r: order.get(r.name, len(order)))
    checked = _verify_tensor_checksums(p, meta.get(TENSOR_CRC_KEY))
    return FileSummary(str(p), "sparsecodec model (safetensors)", version, layers, size, checked)


def tensor_checksums(raw: Mapping[str, bytes]) -> str:
    """The :data:`TENSOR_CRC_KEY` metadata value for tensors given as their stored (little-endian) bytes."""
    return json.dumps({name: zlib.crc32(data) & 0xFFFFFFFF for name, data in raw.items()}, sort_keys=True)


def _verify_tensor_checksums(p: pathlib.Path, entry: str | None) -> int:
    """Check every tensor named in the checksum metadata against the bytes in the file; returns how
    many were checked. The safetensors layout: u64 header length, JSON header, then the data."""
    if entry is None:
        return 0
    try:
        expected = json.loads(entry)
    except json.JSONDecodeError:
        raise ValueError(f"{p} is damaged: its checksum metadata is not valid JSON") from None
    with p.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        start = 8 + header_len
        for name, crc in expected.items():
            if name not in header:
                raise ValueError(f"{p} is damaged: tensor {name!r} is missing")
            begin, end = header[name]["data_offsets"]
            f.seek(start + begin)
            if zlib.crc32(f.read(end - begin)) & 0xFFFFFFFF != crc:
                raise ValueError(f"{p} is damaged: tensor {name!r} fails its CRC32 check")
    return len(expected)


def _spec_shape(spec: dict[str, Any], streams: Sequence[bytes]) -> tuple[int, ...]:
    if spec.get("class") == "SQConv2d":
        kh, kw = spec["kernel_size"]
        return (spec["out_channels"], spec["in_channels"] // spec["groups"], kh, kw)
    return tuple(peek_header(streams[0])["shape"])


def _module_order(keys: Iterable[str]) -> list[str]:
    """Module names in the order their tensors' keys sort naturally (conv1 before conv2 before fc1)."""
    seen: dict[str, None] = {}
    for key in sorted(keys, key=_natural_key):
        seen.setdefault(key.rpartition(".")[0], None)
    return list(seen)


def _natural_key(key: str) -> list[tuple[int, Any]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", key) if part]


def _int_or_none(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -------------------------------------------------------------------------------------------------
def summarize_model(model: Any) -> list[LayerSummary]:
    """The rows of :func:`inspect_file` for a live torch model: every compressed layer, and every
    other module whose weight has two or more dimensions (kept dense)."""
    import torch

    from .nn.registry import compressed_kind

    rows: list[LayerSummary] = []
    for name, module in model.named_modules():
        kind = compressed_kind(module)
        if kind is not None:
            streams = [getattr(module, s).detach().cpu().numpy().tobytes() for s in module._stream_names]
            rows.append(compressed_layer(name, type(module).__name__, kind.weight_shape(module), streams))
            continue
        w = getattr(module, "weight", None)
        if name and isinstance(w, torch.Tensor) and w.dim() >= 2:
            dtype = str(w.dtype).removeprefix("torch.")
            rows.append(dense_layer(name, type(module).__name__, tuple(w.shape), w.element_size() * 8, dtype))
    return rows
