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

MAGIC = b"SPCX"
FORMAT_VERSION = 2  # 2: value models (quant.value_model, their own sections), mask format 'none'

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


@dataclass(frozen=True)
class Stream:
    """A parsed container: method name, format version, JSON header and named sections."""

    method: str
    version: int
    header: dict[str, Any]
    sections: dict[str, bytes]


def write_stream(method: str, header: dict[str, Any], sections: list[tuple[str, bytes]]) -> bytes:
    """Serialise a container. ``sections`` keeps its order; tags are 4 ASCII characters."""
    if method not in METHODS:
        raise ValueError(f"unknown stream method {method!r}")
    header_bytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    body = bytearray()
    body += _COUNT.pack(len(sections))
    for tag, payload in sections:
        tag_bytes = tag.encode("ascii")
        if len(tag_bytes) != 4:
            raise ValueError(f"section tag must be 4 ASCII characters, got {tag!r}")
        body += _SECTION.pack(tag_bytes, len(payload))
        body += payload
    total = _PREFIX.size + len(header_bytes) + len(body) + _CRC.size
    out = bytearray(_PREFIX.pack(MAGIC, FORMAT_VERSION, METHODS[method], total, len(header_bytes)))
    out += header_bytes
    out += body
    out += _CRC.pack(zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


def read_stream(data: bytes | bytearray | memoryview) -> Stream:
    """Parse and verify a container; raises :class:`StreamError` on any defect."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected a bytes-like stream, got {type(data).__name__}")
    buf = bytes(data)
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
    if zlib.crc32(memoryview(buf)[: len(buf) - _CRC.size]) & 0xFFFFFFFF != crc:
        raise StreamError("stream is damaged: CRC32 checksum mismatch")
    if method_id not in _METHOD_NAMES:
        raise StreamError(f"stream uses unknown method id {method_id}")

    end = len(buf) - _CRC.size
    pos = _PREFIX.size
    if pos + header_len > end:
        raise StreamError("stream header length runs past the end of the stream")
    try:
        header = json.loads(buf[pos : pos + header_len].decode("utf-8"))
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
    sections: dict[str, bytes] = {}
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
        if pos + length > end:
            raise StreamError(f"section {tag!r} runs past the end of the stream")
        sections[tag] = buf[pos : pos + length]
        pos += length
    if pos != end:
        raise StreamError(f"{end - pos} unaccounted bytes after the last section")
    return Stream(_METHOD_NAMES[method_id], version, header, sections)


def peek_header(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The verified JSON header of a stream plus its method and version, without decoding it."""
    stream = read_stream(data)
    return {"method": stream.method, "format_version": stream.version, **stream.header}
