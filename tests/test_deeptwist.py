"""Distortions and the DeepTwist training hook."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sparsecodec as sc  # noqa: E402
from sparsecodec.deeptwist import DeepTwist, linear_and_conv_weights  # noqa: E402
from sparsecodec.distortion import Distortion, LowRankPruning, MagnitudePruning  # noqa: E402

from conftest import assert_bit_equal  # noqa: E402


@pytest.mark.parametrize(
    "distortion",
    [
        Distortion(MagnitudePruning(0.8), bits=2),
        Distortion(LowRankPruning(0.9, rank=4, tile=(16, 40)), bits=3, group_size=24, scale_dtype="float16"),
        Distortion(None, bits=1, method="alternating"),
    ],
    ids=["magnitude", "lowrank", "quantize-only"],
)
def test_encoding_reproduces_the_distortion_exactly(distortion, rng):
    w = rng.standard_normal((32, 8, 3, 3)).astype(np.float32)  # conv weights: read as 32 x 72
    distorted, mask = distortion.apply(w, step=5)
    assert distorted.shape == w.shape
    enc = distortion.encode(w, step=5)
    assert_bit_equal(sc.decode(enc), distorted.reshape(32, -1))
    assert np.array_equal(enc.mask.to_dense(), mask.to_dense())


def test_schedules_are_functions_of_the_step(rng):
    w = rng.standard_normal((40, 50)).astype(np.float32)
    schedule = functools.partial(sc.cubic_sparsity, final_sparsity=0.9, begin_step=0, end_step=100)
    d = Distortion(MagnitudePruning(schedule))
    assert d.apply(w, step=0)[1].sparsity == 0.0
    assert d.apply(w, step=100)[1].sparsity == pytest.approx(0.9)
    with pytest.raises(ValueError, match="cannot be XOR-encoded"):
        d.encode(w)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(36, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _train_steps(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 1, 5, 5, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), torch.optim.Adam])
def test_distorts_every_period_with_any_optimizer(make_opt):
    torch.manual_seed(0)
    model = _Net()
    weights = linear_and_conv_weights(model)
    assert set(weights) == {"conv", "fc"}
    twist = DeepTwist(weights, Distortion(MagnitudePruning(0.5), bits=1), period=3)
    opt = make_opt(model.parameters())
    handle = twist.attach(opt)
    _train_steps(model, opt, 3)
    # Right after a distortion every weight is its own distortion: pruned and 1-bit.
    for name, p in weights.items():
        w = p.detach().numpy()
        again, _ = twist.distortions[name].apply(w, twist.steps)
        np.testing.assert_array_equal(w, again)
        assert len(np.unique(np.abs(w[w != 0].reshape(-1)))) <= w.shape[0]  # one magnitude per row
    _train_steps(model, opt, 1)
    assert twist.steps == 4 and (model.fc.weight.detach() != 0).float().mean() > 0.5  # free between distortions
    handle.remove()
    _train_steps(model, opt, 5)
    assert twist.steps == 4


def test_frozen_masks_are_kept_and_enforced_and_encode_matches():
    torch.manual_seed(1)
    model = _Net()
    weights = linear_and_conv_weights(model)
    schedule = functools.partial(sc.cubic_sparsity, final_sparsity=0.75, begin_step=0, end_step=4)
    d = Distortion(LowRankPruning(schedule, rank=2), bits=2)
    twist = DeepTwist(weights, d, period=2, freeze_masks_at=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    twist.attach(opt)
    _train_steps(model, opt, 4)
    frozen = {k: m.to_dense() for k, m in twist.masks.items()}
    _train_steps(model, opt, 5, seed=3)
    for name, p in weights.items():
        assert np.array_equal(twist.masks[name].to_dense(), frozen[name])
        w2d = p.detach().numpy().reshape(p.shape[0], -1)
        assert not w2d[~frozen[name]].any()  # pruned weights held at zero between distortions
    encoded = twist.encode()
    for name, enc in encoded.items():
        assert np.array_equal(enc.mask.to_dense(), frozen[name])
        assert enc.stats["mask_format"] == "lowrank"
    expected = {
        name: twist.distortions[name].apply(p.detach().numpy(), twist.steps, twist.masks[name])[0]
        for name, p in weights.items()
    }
    twist.load(encoded)
    for name, p in weights.items():
        np.testing.assert_array_equal(p.detach().numpy(), expected[name])


def test_bad_arguments():
    model = _Net()
    with pytest.raises(ValueError, match="period"):
        DeepTwist(linear_and_conv_weights(model), Distortion(bits=1), period=0)
    with pytest.raises(ValueError, match="no distortion given"):
        DeepTwist(linear_and_conv_weights(model), {"conv": Distortion(bits=1)}, period=1)
    with pytest.raises(ValueError, match="at least one weight"):
        DeepTwist({}, Distortion(bits=1), period=1)


@pytest.mark.slow
def test_digits_experiment_stays_within_two_points():
    """The end-to-end claim of bench/digits_deeptwist.py, for one seed (about 40 s)."""
    pytest.importorskip("sklearn")
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
    from digits_deeptwist import run

    r = run(0.9, 8, None, 2, 30, 40, 20, seed=0)
    assert r["compressed_accuracy"] >= r["dense_accuracy"] - 0.02
    assert r["compressed_bpw"]["total"] <= 0.5
    assert all(layer["sparsity"] >= 0.9 - 0.005 for layer in r["layers"])
