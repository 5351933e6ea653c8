"""The byte container: self-description, versioning, and damage detection."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import sparsecodec as sc
from sparsecodec.formats.stream import (
    FORMAT_VERSION,
    MAGIC,
    StreamError,
    buffer_address,
    read_stream,
    write_stream,
)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _refresh_crc(stream: bytes) -> bytes:
    return _with_crc(stream[:-4])


@pytest.fixture(scope="module")
def streams():
    rng = np.random.default_rng(7)
    out = []
    for shape, depth, bits in [((40, 70), 2, 2), ((9, 300), 1, 3), ((1, 1), 2, 1), ((64, 64), 1, 1)]:
        w = rng.standard_normal(shape).astype(np.float32)
        out.append(sc.encode(w, sparsity=0.8, bits=bits, depth=depth).to_bytes())
    # Format 2's value models and the "none" mask.
    for shape, sparsity, bits, method in [
        ((30, 64), 0.0, 4, "uniform"),
        ((12, 80), 0.5, 3, "alternating"),
        ((20, 48), 0.0, 8, "uniform"),
        ((16, 40), 0.0, 2, "alternating"),
    ]:
        w = rng.standard_normal(shape).astype(np.float32) + 0.5
        out.append(sc.encode(w, sparsity=sparsity, bits=bits, method=method, group_size=16).to_bytes())
    return out


def test_container_round_trip():
    data = write_stream("xor-bcq", {"a": 1, "b": [1, 2]}, [("ABCD", b"xyz"), ("EFGH", b"")])
    s = read_stream(data)
    assert (s.method, s.version, s.header) == ("xor-bcq", FORMAT_VERSION, {"a": 1, "b": [1, 2]})
    assert s.sections == {"ABCD": b"xyz", "EFGH": b""}
    assert data[:4] == MAGIC


def test_payloads_start_aligned_and_end_in_zero_padding():
    payloads = [("ODD1", b"\x01" * 3), ("NONE", b""), ("ODD2", b"\xff" * 13), ("WORD", bytes(range(8)))]
    data = write_stream("xor-bcq", {"x": "y"}, payloads)
    s = read_stream(data)
    assert s.sections == dict(payloads)
    for tag, payload in payloads:
        start = buffer_address(s.sections[tag]) - buffer_address(s.buffer) if payload else None
        assert start is None or start % 8 == 0, tag
    assert len(data) % 8 == 4  # the padded body, then the 4-byte CRC
    # a nonzero padding byte is damage, even under a valid checksum
    pad_after_odd1 = data.index(b"\x01" * 3) + 3
    bad = bytearray(data[:-4])
    bad[pad_after_odd1] = 1
    with pytest.raises(StreamError, match="nonzero padding"):
        read_stream(_with_crc(bytes(bad)))


def test_stream_words_are_views_when_aligned_and_copies_otherwise():
    bits = np.random.default_rng(3).integers(0, 2**63, 5, dtype=np.uint64)
    data = write_stream("xor-bcq", {}, [("HEAD", b"\x07"), ("BITS", bits.tobytes()[:37])])  # 296 bits
    aligned = np.zeros(len(data) + 8, np.uint8)[8:]  # numpy's own buffer: 8-byte aligned (16 here)
    aligned[:] = np.frombuffer(data, np.uint8)
    s = read_stream(aligned)
    words = s.words(s.sections["BITS"], 296)
    assert np.shares_memory(words, aligned) and not words.flags.writeable
    expected = bits[:5].copy()
    expected[4] &= np.uint64((1 << (296 - 256)) - 1)
    assert np.array_equal(words, expected)
    shifted = np.zeros(len(data) + 1, np.uint8)[1:]  # misaligned by one byte: read as a copy
    shifted[:] = aligned
    t = read_stream(shifted)
    copied = t.words(t.sections["BITS"], 296)
    assert not np.shares_memory(copied, shifted) and np.array_equal(copied, expected)
    part = s.sections["BITS"][:8]  # not a whole section: no padding follows it, so a copy
    assert not np.shares_memory(s.words(part, 64), aligned)
    with pytest.raises(ValueError, match="nonzero padding bits"):
        s.words(s.sections["BITS"], 290)  # bits 290..295 are set: the declared length is wrong
    with pytest.raises(ValueError, match="expected 38 bytes"):
        s.words(s.sections["BITS"], 300)


def test_a_mask_format_written_before_word_readers_still_loads():
    from sparsecodec.masks import BitmapMask, mask_from_stream
    from sparsecodec.masks.base import MASK_FORMATS

    class OldBitmap(BitmapMask):  # from_stream as third-party formats declared it: three arguments
        format_id = "old-bitmap-test"

        @classmethod
        def from_stream(cls, shape, params, payload):
            assert isinstance(payload, bytes)
            return cls(shape, np.frombuffer(payload + bytes(-len(payload) % 8), np.uint64).copy())

    MASK_FORMATS[OldBitmap.format_id] = OldBitmap
    try:
        mask = mask_from_stream((2, 8), {"format": OldBitmap.format_id}, memoryview(b"\x0f\xf0"))
        assert mask.kept == 8
    finally:
        del MASK_FORMATS[OldBitmap.format_id]


def test_header_can_be_inspected_without_decoding(streams):
    info = sc.peek_header(streams[0])
    assert info["method"] == "xor-bcq" and info["format_version"] == sc.FORMAT_VERSION
    assert info["shape"] == [40, 70] and info["bits"] == 2 and info["xor"]["depth"] == 2


def test_newer_version_is_refused_with_advice(streams):
    data = bytearray(streams[0])
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    with pytest.raises(StreamError, match="newer than this sparsecodec supports"):
        sc.EncodedWeight.from_bytes(_refresh_crc(bytes(data)))


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: b"PK\x03\x04" + d[4:], "bad magic"),
        (lambda d: b"", "bad magic"),
        (lambda d: d[:10], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\x00", "trailing"),
        (lambda d: d[:30] + bytes([d[30] ^ 1]) + d[31:], "checksum"),
    ],
)
def test_damage_is_named(streams, mutate, match):
    with pytest.raises(StreamError, match=match):
        sc.EncodedWeight.from_bytes(mutate(streams[1]))


def test_stream_error_is_a_value_error():
    assert issubclass(StreamError, ValueError)


def _corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(6)
    d = bytearray(data)
    if kind == 0:  # flip a few bits
        for _ in range(rng.integers(1, 9)):
            i = int(rng.integers(len(d) * 8))
            d[i // 8] ^= 1 << (i % 8)
    elif kind == 1:  # overwrite a run of bytes
        i = int(rng.integers(len(d)))
        n = int(rng.integers(1, 16))
        d[i : i + n] = rng.integers(0, 256, min(n, len(d) - i), dtype=np.uint8).tobytes()
    elif kind == 2:  # truncate
        del d[int(rng.integers(len(d))) :]
    elif kind == 3:  # insert bytes
        i = int(rng.integers(len(d)))
        d[i:i] = rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8).tobytes()
    elif kind == 4:  # delete bytes
        i = int(rng.integers(len(d)))
        del d[i : i + int(rng.integers(1, 8))]
    else:  # random garbage with a valid magic
        d = bytearray(MAGIC + rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes())
    return bytes(d)


def test_thousands_of_corrupted_streams_are_all_rejected(streams):
    """Random damage never crashes and never decodes: every stream raises StreamError."""
    rng = np.random.default_rng(2024)
    rejected = 0
    for i in range(4000):
        original = streams[i % len(streams)]
        bad = _corrupt(original, rng)
        if bad == original:
            continue
        with pytest.raises(StreamError):
            sc.EncodedWeight.from_bytes(bad)
        rejected += 1
    assert rejected > 3900


def test_damage_behind_a_valid_checksum_never_crashes(streams):
    """Even when the CRC is recomputed (deliberate tampering), parsing either raises a ValueError
    or yields an EncodedWeight that decodes to finite weights of the declared shape."""
    rng = np.random.default_rng(99)
    outcomes = {"rejected": 0, "decoded": 0}
    for i in range(1500):
        original = streams[i % len(streams)]
        d = bytearray(original[:-4])
        for _ in range(rng.integers(1, 4)):
            j = int(rng.integers(len(d) * 8))
            d[j // 8] ^= 1 << (j % 8)
        try:
            enc = sc.EncodedWeight.from_bytes(_with_crc(bytes(d)))
        except ValueError:
            outcomes["rejected"] += 1
            continue
        out = sc.decode(enc)
        assert out.shape == enc.shape and np.isfinite(out).all()
        outcomes["decoded"] += 1
    assert outcomes["rejected"] > 0 and outcomes["decoded"] > 0
