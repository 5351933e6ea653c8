"""Encoding efficiency on i.i.d. random masks: the compression users choose this format for.

E = q (1 - S) m n / (stored value bits incl. patches); 1 is the entropy limit.
"""

from __future__ import annotations

import numpy as np
import pytest

import sparsecodec as sc


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((512, 1024)).astype(np.float32)
    mask = rng.random(w.shape) >= 0.9
    return w, mask


@pytest.mark.parametrize("depth,minimum", [(1, 0.85), (2, 0.93)])
def test_efficiency_at_ninety_percent_sparsity(layer, depth, minimum):
    w, mask = layer
    stats = sc.encode(w, mask=mask, bits=1, depth=depth).stats
    assert stats["efficiency"] >= minimum
    assert stats["values_bpw"] + stats["patch_bpw"] >= stats["bound_bpw"]


def test_stats_account_for_every_bit(layer):
    w, mask = layer
    enc = sc.encode(w, mask=mask, bits=2, group_size=128, scale_dtype="float16")
    s = enc.stats
    n = w.size
    assert s["values_bpw"] == pytest.approx(2 * enc.n_slices * enc.n_in / n)
    assert s["mask_bpw"] == pytest.approx(1.0)  # bitmap
    assert s["scale_bpw"] == pytest.approx(512 * 8 * 2 * 16 / n)
    assert s["total_bpw"] == pytest.approx(s["values_bpw"] + s["patch_bpw"] + s["mask_bpw"] + s["scale_bpw"])
    assert s["patches"] == sum(s["patches_per_plane"]) > 0
    assert s["sparsity"] == pytest.approx(1 - mask.mean())
    # The stream is the accounted bits plus a small header.
    stream_bits = len(enc.to_bytes()) * 8
    assert s["total_bpw"] * n <= stream_bits <= s["total_bpw"] * n + 8 * 2048


@pytest.mark.parametrize("depth", [1, 2])
def test_scatter_layout_keeps_structured_masks_efficient(depth):
    """Kept weights clustered in rows and column blocks would overload some slices and starve others;
    the scatter layout spreads every slice over a group, so E stays near the i.i.d. figure."""
    rng = np.random.default_rng(9)
    w = rng.standard_normal((512, 1024)).astype(np.float32)
    row_density = np.clip(rng.gamma(1.0, 0.1, (512, 1)), 0, 1)  # per-row density, CV = 1
    col_density = np.where(np.arange(1024) % 256 < 128, 1.6, 0.4)[None, :]
    mask = rng.random(w.shape) < row_density * col_density
    linear = sc.encode(w, mask=mask, bits=1, depth=depth, layout="linear").stats["efficiency"]
    scatter = sc.encode(w, mask=mask, bits=1, depth=depth, layout="scatter").stats["efficiency"]
    assert scatter >= 0.9
    assert scatter > linear + 0.1
