"""Committed streams of every format version decode to their committed arrays, forever."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import sparsecodec as sc

from conftest import assert_bit_equal

FIXTURES = sorted(pathlib.Path(__file__).parent.joinpath("fixtures").glob("v*/*.spcx"))


def test_fixtures_exist():
    assert len(FIXTURES) >= 7


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_golden_stream_decodes_exactly(path):
    data = path.read_bytes()
    enc = sc.EncodedWeight.from_bytes(data)
    expected = np.load(path.with_suffix(".npy"))
    assert_bit_equal(sc.decode(enc), expected)
    # Re-serialising what was read reproduces the stream byte for byte.
    if path.parent.name == f"v{sc.FORMAT_VERSION}":
        assert enc.to_bytes() == data
    # Read in place from a buffer at an odd address (every array copied), the same weight.
    odd = np.zeros(len(data) + 1, np.uint8)[1:]
    odd[:] = np.frombuffer(data, np.uint8)
    assert_bit_equal(sc.decode(sc.EncodedWeight.from_bytes(odd, in_place=True)), expected)
