"""The self-describing byte container every sparsecodec stream uses.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"SPCX"
    4       2     format version (independent of the package version)
    6       2     method id
    8       8     total stream length in bytes, CRC included
    16      4     header length H
    20      H     header: UTF-8 JSON object (dtype, shape, parameters)
    20+H    4     section count N
            ...   N sections: 4-byte ASCII tag, 8-byte payload length, payload
    end-4   4     CRC32 of every byte before it

From format version 3 on, zero bytes pad the section table so that every payload starts at a
multiple of 8 bytes from the stream's start and is followed by zeros up to the next multiple of 8
(the length field counts the payload alone). A reader can then use packed uint64 words in place,
inside the stream's own buffer, instead of copying them (:meth:`Stream.words`).

Readers accept every format version up to :data:`FORMAT_VERSION`, forever. A newer version, a
foreign or truncated stream, a checksum mismatch or a malformed layout raises :class:`StreamError`
(a ``ValueError``) that says which.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bitpack import bytes_to_words, words_for

MAGIC = b"SPCX"
# 2: value models (quant.value_model, their own sections), mask format 'none'
# 3: payloads aligned to and padded to 8 bytes (packed words usable in place)
FORMAT_VERSION = 3
ALIGNED_FROM_VERSION = 3  # the first version whose payloads are aligned and padded
_ALIGN = 8

#: Method ids written into streams. Ids are never reused.
METHODS: dict[str, int] = {"xor-bcq": 1}
_METHOD_NAMES = {v: k for k, v in METHODS.items()}

_PREFIX = struct.Struct("<4sHHQI")  # magic, version, method, total length, header length
_SECTION = struct.Struct("<4sQ")
_COUNT = struct.Struct("<I")
_CRC = struct.Struct("<I")
_MAX_SECTIONS = 1024


class StreamError(ValueError):
    """A byte stream is not a valid sparsecodec stream (foreign, truncated, damaged or too new)."""


def _pad(n: int) -> int:
    """Zero bytes that take offset ``n`` to the next multiple of 8."""
    return -n % _ALIGN


@dataclass(frozen=True)
class Stream:
    """A parsed container: method name, format version, JSON header and named sections.

    ``sections`` are read-only views into the buffer the stream was read from (no copies): arrays
    made from them keep that buffer alive (:func:`stream_exporter` finds it from such an array).
    """

    method: str
    version: int
    header: dict[str, Any]
    sections: dict[str, memoryview]
    buffer: memoryview = memoryview(b"")  # the whole stream, read-only

    def words(self, payload: memoryview | bytes, n_bits: int) -> np.ndarray:
        """The packed uint64 words of ``n_bits`` bits stored in ``payload``.

        When ``payload`` is one of :attr:`sections` of an aligned stream (format 3 on) whose buffer
        sits at an 8-byte aligned address, the result is a read-only view into the buffer: the last
        word's bytes past the payload are the format's zero padding. Otherwise, a copy. Either way,
        bits past ``n_bits`` must be zero (``ValueError``)."""
        n_bytes, n_words = (n_bits + 7) // 8, words_for(n_bits)
        if len(payload) != n_bytes:
            raise ValueError(f"expected {n_bytes} bytes for {n_bits} bits, got {len(payload)}")
        start = _offset_in(payload, self.buffer) if isinstance(payload, memoryview) else None
        if (
            self.version < ALIGNED_FROM_VERSION
            or start is None
            or not any(payload is section for section in self.sections.values())  # padding follows
            or start % _ALIGN
            or start + n_words * 8 > len(self.buffer)
            or buffer_address(self.buffer) % _ALIGN
            or np.dtype("<u8") != np.dtype(np.uint64)  # a big-endian host reads them converted
        ):
            return bytes_to_words(payload, n_bits)
        words = np.frombuffer(self.buffer, dtype=np.uint64, count=n_words, offset=start)
        if n_bits % 64 and int(words[-1]) >> (n_bits % 64):
            raise ValueError("nonzero padding bits after the last stored bit")
        return words


def stream_exporter(arr: np.ndarray) -> Any:
    """The object whose memory ``arr`` views through a stream read by :func:`read_stream` (the
    bytes, array or buffer that was read), or None when ``arr`` holds memory of its own."""
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else None


def buffer_address(view: memoryview) -> int:
    """The memory address of a bytes view's first byte (0 for an empty one)."""
    return np.frombuffer(view, dtype=np.uint8).ctypes.data if len(view) else 0


def _offset_in(part: memoryview, whole: memoryview) -> int | None:
    """Where ``part`` starts inside ``whole``, or None when it is not a contiguous part of it."""
    if len(part) == 0:
        return None
    offset = buffer_address(part) - buffer_address(whole)
    return offset if 0 <= offset and offset + len(part) <= len(whole) else None


def write_stream(method: str, header: dict[str, Any], sections: list[tuple[str, bytes]]) -> bytes:
    """Serialise a container. ``sections`` keeps its order; tags are 4 ASCII characters."""
    if method not in METHODS:
        raise ValueError(f"unknown stream method {method!r}")
    header_bytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    out = bytearray(_PREFIX.pack(MAGIC, FORMAT_VERSION, METHODS[method], 0, len(header_bytes)))
    out += header_bytes
    out += _COUNT.pack(len(sections))
    for tag, payload in sections:
        tag_bytes = tag.encode("ascii")
        if len(tag_bytes) != 4:
            raise ValueError(f"section tag must be 4 ASCII characters, got {tag!r}")
        out += _SECTION.pack(tag_bytes, len(payload))
        out += bytes(_pad(len(out)))
        out += payload
        out += bytes(_pad(len(out)))
    struct.pack_into("<Q", out, 8, len(out) + _CRC.size)  # the total length, known only now
    out += _CRC.pack(zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


def read_stream(data: bytes | bytearray | memoryview | np.ndarray) -> Stream:
    """Parse and verify a container; raises :class:`StreamError` on any defect.

    Reads ``data`` in place (a 1-D uint8 array or any bytes-like object; non-contiguous ones are
    copied): the returned sections view it, so it must not change while they are in use."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise TypeError(f"expected a 1-D uint8 array of stream bytes, got {data.dtype} {data.shape}")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected a bytes-like stream, got {type(data).__name__}")
    buf = memoryview(data)
    if not buf.c_contiguous or buf.ndim != 1 or buf.itemsize != 1:
        buf = memoryview(buf.tobytes())
    buf = buf.cast("B").toreadonly()
    if len(buf) < 4 or buf[:4] != MAGIC:
        raise StreamError("not a sparsecodec stream (bad magic bytes)")
    if len(buf) < _PREFIX.size + _CRC.size:
        raise StreamError(f"stream is truncated: {len(buf)} bytes is shorter than the fixed header")
    _, version, method_id, total, header_len = _PREFIX.unpack_from(buf, 0)
    if version > FORMAT_VERSION:
        raise StreamError(
            f"stream format version {version} is newer than this sparsecodec supports "
            f"(up to {FORMAT_VERSION}); upgrade sparsecodec to read it"
        )
    if version < 1:
        raise StreamError(f"invalid stream format version {version}")
    if total != len(buf):
        if total > len(buf):
            raise StreamError(f"stream is truncated: header says {total} bytes, got {len(buf)}")
        raise StreamError(f"stream has {len(buf) - total} unexpected trailing bytes")
    (crc,) = _CRC.unpack_from(buf, len(buf) - _CRC.size)
    if zlib.crc32(buf[: len(buf) - _CRC.size]) & 0xFFFFFFFF != crc:
        raise StreamError("stream is damaged: CRC32 checksum mismatch")
    if method_id not in _METHOD_NAMES:
        raise StreamError(f"stream uses unknown method id {method_id}")

    end = len(buf) - _CRC.size
    pos = _PREFIX.size
    if pos + header_len > end:
        raise StreamError("stream header length runs past the end of the stream")
    try:
        header = json.loads(bytes(buf[pos : pos + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StreamError(f"stream header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise StreamError("stream header must be a JSON object")
    pos += header_len
    if pos + _COUNT.size > end:
        raise StreamError("stream ends before its section table")
    (count,) = _COUNT.unpack_from(buf, pos)
    pos += _COUNT.size
    if count > _MAX_SECTIONS:
        raise StreamError(f"stream declares {count} sections (at most {_MAX_SECTIONS} allowed)")
    aligned = version >= ALIGNED_FROM_VERSION
    sections: dict[str, memoryview] = {}
    for _ in range(count):
        if pos + _SECTION.size > end:
            raise StreamError("stream ends inside its section table")
        tag_bytes, length = _SECTION.unpack_from(buf, pos)
        pos += _SECTION.size
        try:
            tag = tag_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise StreamError("stream has a section with a non-ASCII tag") from None
        if tag in sections:
            raise StreamError(f"stream repeats section {tag!r}")
        pos = _skip_padding(buf, pos, end, tag) if aligned else pos
        if pos + length > end:
            raise StreamError(f"section {tag!r} runs past the end of the stream")
        sections[tag] = buf[pos : pos + length]
        pos += length
        pos = _skip_padding(buf, pos, end, tag) if aligned else pos
    if pos != end:
        raise StreamError(f"{end - pos} unaccounted bytes after the last section")
    return Stream(_METHOD_NAMES[method_id], version, header, sections, buf)


def _skip_padding(buf: memoryview, pos: int, end: int, tag: str) -> int:
    """The offset past the zero bytes that align ``pos``; refuses missing or nonzero padding."""
    stop = pos + _pad(pos)
    if stop > end:
        raise StreamError(f"section {tag!r} runs past the end of the stream")
    if any(buf[pos:stop]):
        raise StreamError(f"section {tag!r} has nonzero padding bytes")
    return stop


def peek_header(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The verified JSON header of a stream plus its method and version, without decoding it."""
    stream = read_stream(data)
    return {"method": stream.method, "format_version": stream.version, **stream.header}
