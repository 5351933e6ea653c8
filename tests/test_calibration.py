"""Calibrated compression: GPTQ, SparseGPT and Wanda on synthetic layers, and the sequential
pipeline of compress_(calibration=...) on small torch models."""

from __future__ import annotations

import concurrent.futures
import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import sparsecodec as sc
from sparsecodec.calibration import SolverOptions, UniformGrid, solve
from sparsecodec.calibration.hessian import HessianSum, input_rows, token_rows
from sparsecodec.masks.pruning import frequency_weighted_mask, magnitude_mask, wanda_mask, wanda_scores

from conftest import rtn_reference


def correlated_inputs(rng, n: int, d: int) -> np.ndarray:
    """Calibration inputs with correlated features and unequal activity, as real activations have."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    scale = rng.uniform(0.5, 2.0, d)
    return (rng.standard_normal((n, d)) @ mix + 0.3 * rng.standard_normal((n, d))) * scale


def output_error(w, w_hat, h) -> float:
    d = np.asarray(w, dtype=np.float64) - w_hat
    return float(np.einsum("ij,jk,ik->", d, h, d))


@pytest.fixture
def layer(rng):
    w = rng.standard_normal((48, 160))
    x = correlated_inputs(rng, 600, 160)
    return w, x, x.T @ x


# --------------------------------------------------------------------------------------------- GPTQ
@pytest.mark.parametrize("bits, group_size", [(2, 32), (3, None), (4, 64), (8, 32)])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_output_error_is_below_round_to_nearest(layer, bits, group_size, act_order):
    w, _, h = layer
    gs = group_size or w.shape[1]
    sol = solve(w, h, grid=UniformGrid(bits, gs), options=SolverOptions(act_order=act_order, clip_search=False))
    assert output_error(w, sol.weights, h) < output_error(w, rtn_reference(w, bits, group_size), h)


@pytest.mark.parametrize("bits, group_size", [(1, 16), (3, 40), (4, None), (8, 64)])
def test_gptq_with_an_identity_hessian_is_round_to_nearest(rng, bits, group_size):
    w = rng.standard_normal((20, 128))
    gs = group_size or 128
    sol = solve(w, np.eye(128), grid=UniformGrid(bits, gs), options=SolverOptions(clip_search=False))
    np.testing.assert_array_equal(sol.weights, rtn_reference(w, bits, group_size))
    # and through encode: the stream holds the same values as method="uniform"
    w32 = w.astype(np.float32)
    kw = dict(sparsity=0.0, bits=bits, group_size=group_size, scale_dtype="float16")
    a = sc.encode(w32, method="gptq", hessian=np.eye(128), solver=SolverOptions(clip_search=False), **kw)
    b = sc.encode(w32, method="uniform", **kw)
    assert a.value_model == "uniform" and a.quant.method == "gptq"
    np.testing.assert_array_equal(sc.decode(a), sc.decode(b))


def test_gptq_values_lie_on_the_stored_grid_exactly(layer):
    w, _, h = layer
    enc = sc.encode(
        w.astype(np.float32), sparsity=0.0, bits=4, group_size=32, method="gptq", hessian=h, scale_dtype="float16"
    )
    sol = solve(w.astype(np.float32), h, grid=UniformGrid(4, 32, "float16"))
    np.testing.assert_array_equal(sc.decode(enc), sol.weights.astype(np.float32))
    again = sc.EncodedWeight.from_bytes(enc.to_bytes())
    assert again.to_bytes() == enc.to_bytes() and again.quant.method == "gptq"


def test_clip_search_lowers_the_output_error_at_low_bits(layer):
    w, _, h = layer
    plain = solve(w, h, grid=UniformGrid(2, 32), options=SolverOptions(clip_search=False))
    clipped = solve(w, h, grid=UniformGrid(2, 32), options=SolverOptions(clip_search=True))
    assert output_error(w, clipped.weights, h) < output_error(w, plain.weights, h)


def test_pruned_weights_stay_exactly_zero_and_their_error_is_compensated(layer):
    w, _, h = layer
    keep = magnitude_mask(w, 0.5)
    enc = sc.encode(w.astype(np.float32), mask=keep, bits=4, group_size=32, method="gptq", hessian=h)
    out = sc.decode(enc)
    assert np.all(out[~keep] == 0.0) and np.signbit(out[~keep]).sum() == 0
    uncompensated = sc.decode(sc.encode(w.astype(np.float32), mask=keep, bits=4, group_size=32, method="uniform"))
    assert output_error(w, out, h) < 0.85 * output_error(w, uncompensated, h)


# ---------------------------------------------------------------------------------------- SparseGPT
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.77])
def test_sparsegpt_meets_the_sparsity_exactly_and_beats_magnitude(layer, sparsity):
    w, _, h = layer
    sol = solve(w, h, sparsity=sparsity, options=SolverOptions(block_size=64))
    assert int((~sol.keep).sum()) == round(sparsity * w.size)
    assert np.all(sol.weights[~sol.keep] == 0.0)
    assert output_error(w, sol.weights, h) < output_error(w, w * magnitude_mask(w, sparsity), h)


def test_sparsegpt_joint_with_gptq_through_encode(layer):
    w, _, h = layer
    w32 = w.astype(np.float32)
    enc = sc.encode(w32, sparsity=0.5, bits=4, group_size=32, method="gptq", pruning="sparsegpt", hessian=h)
    assert enc.mask.kept == w.size // 2 and enc.quant.method == "gptq"
    rtn_magnitude = sc.decode(sc.encode(w32, sparsity=0.5, bits=4, group_size=32, method="uniform"))
    assert output_error(w, sc.decode(enc), h) < output_error(w, rtn_magnitude, h)
    # SparseGPT alone, then another fitting method on the reconstructed weights
    alone = sc.encode(w32, sparsity=0.5, bits=4, group_size=32, method="uniform", pruning="sparsegpt", hessian=h)
    assert alone.mask.kept == w.size // 2


# -------------------------------------------------------------------------------------------- Wanda
def test_wanda_mask_equals_a_brute_force_reference(rng):
    w = rng.standard_normal((7, 13))
    x = rng.standard_normal((50, 13)) * rng.uniform(0.1, 3.0, 13)
    norms = np.linalg.norm(x, axis=0)
    for sparsity in (0.0, 0.3, 0.5, 0.9, 1.0):
        keep = wanda_mask(w, norms, sparsity)
        assert int((~keep).sum()) == round(sparsity * w.size)
        per_row = (~keep).sum(axis=1)
        assert per_row.max() - per_row.min() <= 1
        for r in range(w.shape[0]):  # the pruned ones of each row are that row's lowest scores
            score = [abs(w[r, j]) * norms[j] for j in range(13)]
            ranked = sorted(range(13), key=lambda j: (score[j], j))
            assert set(np.flatnonzero(~keep[r])) == set(ranked[: per_row[r]])


def test_wanda_through_encode_uses_the_input_norms(rng):
    w = rng.standard_normal((16, 64)).astype(np.float32)
    x = correlated_inputs(rng, 300, 64)
    h = x.T @ x
    enc = sc.encode(w, sparsity=0.5, bits=4, method="uniform", pruning="wanda", hessian=h)
    np.testing.assert_array_equal(enc.mask.to_dense(), wanda_mask(w, np.linalg.norm(x, axis=0), 0.5))
    assert np.allclose(wanda_scores(w, np.ones(64)), np.abs(w))


def test_frequency_weighted_mask_equals_a_brute_force_reference(rng):
    w = rng.standard_normal((11, 5))
    counts = rng.integers(1, 40, 11).astype(float)
    for sparsity in (0.0, 0.4, 0.8):
        keep = frequency_weighted_mask(w, counts, sparsity)
        n = round(sparsity * w.size)
        order = sorted(np.ndindex(w.shape), key=lambda ij: abs(w[ij]) * np.sqrt(counts[ij[0]]))
        assert {tuple(ij) for ij in np.argwhere(~keep)} == set(order[:n])
    with pytest.raises(ValueError, match="one entry per row"):
        frequency_weighted_mask(w, counts[:3], 0.5)
    with pytest.raises(ValueError, match="non-negative"):
        frequency_weighted_mask(w, -counts, 0.5)


def test_an_embedding_under_a_calibrated_pruning_keeps_the_rows_its_text_uses(tiny):
    """One-hot inputs: SparseGPT / Wanda reduce to magnitude weighted by each row's uses."""
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 10, (4, 9), generator=g)} for _ in range(3)]  # rows 0-9 only
    cfg = sc.SQConfig(sparsity=0.7, bits=4, group_size=8, method="gptq", pruning="sparsegpt")
    w = tiny.embed.weight.detach().numpy().copy()
    report = sc.compress_(tiny, {"embed": cfg, "_default": None}, calibration=batches)
    assert "weighted by the calibration text" in report.converted[0].stats["note"]
    counts = 1.0 + np.bincount(torch.cat([b["input_ids"].reshape(-1) for b in batches]).numpy(), minlength=50)
    kept = tiny.embed.weight.detach().numpy() != 0
    assert np.array_equal(kept, frequency_weighted_mask(w, counts, 0.7))
    assert kept[:10].mean() > 0.6 > 0.25 > kept[10:].mean()


def test_calibrated_lowrank_masks(layer):
    w, _, h = layer
    w32 = w.astype(np.float32)
    for pruning in ("wanda", "sparsegpt"):
        enc = sc.encode(w32, sparsity=0.5, bits=3, method="gptq", pruning=pruning, hessian=h, mask_format="lowrank")
        assert enc.mask.format_id == "lowrank"
        out = sc.decode(enc)
        assert np.all(out[~enc.mask.to_dense()] == 0.0)


# -------------------------------------------------------------------------------------- bad input
def test_calibrated_choices_without_data_raise(rng):
    w = rng.standard_normal((8, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="needs calibration data"):
        sc.encode(w, sparsity=0.0, bits=4, method="gptq")
    for pruning in ("wanda", "sparsegpt"):
        with pytest.raises(ValueError, match="needs calibration data"):
            sc.encode(w, sparsity=0.5, bits=4, method="uniform", pruning=pruning)
    with pytest.raises(ValueError, match=r"hessian must be \(32, 32\)"):
        sc.encode(w, sparsity=0.0, bits=4, method="gptq", hessian=np.eye(31))
    with pytest.raises(ValueError, match="finite"):
        sc.encode(w, sparsity=0.0, bits=4, method="gptq", hessian=np.full((32, 32), np.nan))
    with pytest.raises(ValueError, match="pruning"):
        sc.encode(w, sparsity=0.5, bits=4, pruning="random")
    with pytest.raises(ValueError, match="does not use calibration data|not by"):
        sc.encode(w, sparsity=0.5, bits=4, method="uniform", hessian=np.eye(32))
    with pytest.raises(ValueError, match="damp"):
        SolverOptions(damp=0.0)


# ------------------------------------------------------------------------------------ the pipeline
class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 24)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 24)) for _ in range(3))
        self.head = nn.Linear(24, 6)

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


def token_batches(n_batches=3, batch=4, tokens=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        mask = torch.ones(batch, tokens, dtype=torch.long)
        mask[:, tokens - 3 :] = torch.randint(0, 2, (batch, 3), generator=g)
        out.append({"input_ids": torch.randint(0, 50, (batch, tokens), generator=g), "attention_mask": mask})
    return out


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval()


GPTQ4 = sc.SQConfig(sparsity=0.0, bits=4, group_size=8, method="gptq")


def streams_of(model):
    return {n: bytes(b.numpy()) for n, b in model.named_buffers() if n.endswith("encoded")}


def test_without_calibration_data_calibrated_configs_raise(tiny):
    before = copy.deepcopy(tiny.state_dict())
    with pytest.raises(ValueError, match="needs calibration data"):
        sc.compress_(tiny, GPTQ4)
    with pytest.raises(ValueError, match="needs calibration data"):
        sc.compress_(tiny, sc.SQConfig(sparsity=0.5, bits=4, method="uniform", pruning="wanda"))
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())


def test_calibrated_compress_converts_every_layer_and_beats_rtn(tiny):
    batches = token_batches()
    ref = [tiny(**b) for b in batches]
    gptq, rtn = copy.deepcopy(tiny), copy.deepcopy(tiny)
    seen = []
    report = sc.compress_(gptq, GPTQ4, calibration=batches, progress=seen.append)
    sc.compress_(rtn, sc.SQConfig(sparsity=0.0, bits=4, group_size=8, method="uniform"))
    assert len(report.converted) == 8 and not report.skipped
    assert [p.index for p in seen] == list(range(1, 9)) and all(p.total == 8 for p in seen)
    assert seen[0].name == "embed" and seen[-1].name == "head"
    assert "indices" in next(r for r in report.layers if r.name == "embed").stats["note"]

    def err(m):
        with torch.no_grad():
            return sum(float(((m(**b) - r) ** 2).sum()) for b, r in zip(batches, ref, strict=True))

    assert err(gptq) < err(rtn)


def test_sequential_calibration_sees_compressed_inputs(tiny, monkeypatch):
    """The Hessian of each layer must come from inputs that passed through the compressed layers
    before it: compare with Hessians recomputed on a model whose earlier layers are decoded."""
    batches = token_batches()
    captured = {}
    real_encode = sc.formats.xor_codec.encode

    def spy(weights, **kwargs):
        if "hessian" in kwargs:
            captured[weights.shape, len(captured)] = kwargs["hessian"]
        return real_encode(weights, **kwargs)

    monkeypatch.setattr("sparsecodec.compress.encode", spy)
    model = copy.deepcopy(tiny)
    sc.compress_(model, GPTQ4, calibration=batches)
    # the last layer's Hessian: recompute it on the compressed model itself (exact same inputs)
    head_h = list(captured.values())[-1]

    def head_hessian(net) -> np.ndarray:
        acc, current = HessianSum(24), {}
        handle = net.head.register_forward_pre_hook(lambda m, a: acc.add(token_rows(a[0], current["mask"])))
        for b in batches:
            current["mask"] = b["attention_mask"]
            net(**b)
        handle.remove()
        return acc.hessian()

    np.testing.assert_allclose(head_h, head_hessian(model), rtol=1e-4, atol=1e-6)
    assert not np.allclose(head_h, head_hessian(tiny), rtol=1e-4, atol=1e-6)


def test_padding_positions_are_left_out_of_the_statistics():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    acc = HessianSum(3)
    acc.add(input_rows(nn.Linear(3, 2), x, mask)[0])
    kept = torch.cat([x[0, :3], x[1]])
    np.testing.assert_allclose(acc.hessian(), (kept.T @ kept / 8).numpy())


@pytest.mark.parametrize("groups, padding, mode", [(1, 1, "zeros"), (2, "same", "reflect"), (1, "valid", "zeros")])
def test_convolution_input_rows_reproduce_the_convolution(groups, padding, mode):
    conv = nn.Conv2d(4, 6, 3, stride=1 if padding == "same" else 2, padding=padding, groups=groups, padding_mode=mode)
    x = torch.randn(2, 4, 9, 8)
    rows = input_rows(conv, x, None)
    per = 6 // groups
    y = conv(x) - conv.bias[None, :, None, None]
    for g, r in enumerate(rows):
        w = conv.weight[g * per : (g + 1) * per].reshape(per, -1)
        out = (r @ w.T).reshape(2, y.shape[2], y.shape[3], per).permute(0, 3, 1, 2)
        torch.testing.assert_close(out, y[:, g * per : (g + 1) * per], rtol=1e-4, atol=1e-5)


def test_calibrated_compress_of_a_cnn():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 36, 5)
    )
    batches = [torch.randn(4, 3, 8, 8) for _ in range(2)]
    report = sc.compress_(
        net, sc.SQConfig(sparsity=0.5, bits=4, method="gptq", pruning="sparsegpt"), calibration=batches
    )
    assert len(report.converted) == 3
    assert all(abs(r.stats["sparsity"] - 0.5) < 0.01 for r in report.converted)
    assert net(batches[0]).shape == (4, 5)


def test_batches_that_do_not_fit_raise_before_anything_changes(tiny):
    before = copy.deepcopy(tiny.state_dict())
    bad = token_batches() + [
        {"input_ids": torch.randint(0, 50, (2, 4)), "attention_mask": torch.ones(2, 4), "bogus": 1}
    ]
    with pytest.raises(ValueError, match="calibration batch 3 does not fit the model"):
        sc.compress_(tiny, GPTQ4, calibration=bad)
    with pytest.raises(ValueError, match="calibration batch 0 does not fit"):
        sc.compress_(tiny, GPTQ4, calibration=[torch.randn(2, 3)])
    with pytest.raises(ValueError, match="no batches"):
        sc.compress_(tiny, GPTQ4, calibration=[])
    with pytest.raises(TypeError, match="iterable of model inputs"):
        sc.compress_(tiny, GPTQ4, calibration=3)
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert not any(isinstance(m, sc.nn.SQLinear) for m in tiny.modules())


def test_a_failure_half_way_leaves_the_model_as_it_was(tiny):
    before = copy.deepcopy(tiny.state_dict())

    def fail_on_the_fourth(p):
        if p.index == 4:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        sc.compress_(tiny, GPTQ4, calibration=token_batches(), progress=fail_on_the_fourth)
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert not any(isinstance(m, (sc.nn.SQLinear, sc.nn.SQEmbedding)) for m in tiny.modules())
    assert tiny.training is False


def test_blocks_found_and_named(tiny):
    from sparsecodec.calibration.sequential import find_blocks, resolve_blocks

    names = [n for n, m in tiny.named_modules() if isinstance(m, nn.Linear)]
    assert find_blocks(tiny, names) == ["blocks.0", "blocks.1", "blocks.2"]
    assert resolve_blocks(tiny, "blocks", names) == ["blocks.0", "blocks.1", "blocks.2"]
    with pytest.raises(ValueError, match="no module"):
        resolve_blocks(tiny, "nope", names)
    # whole-model calibration (no blocks) gives the same streams as block by block
    a, b = copy.deepcopy(tiny), copy.deepcopy(tiny)
    sc.compress_(a, GPTQ4, calibration=token_batches())
    sc.compress_(b, GPTQ4, calibration=token_batches(), blocks=[])
    sa, sb = streams_of(a), streams_of(b)
    assert sa.keys() == sb.keys()
    for k in sa:  # same algorithm, inputs equal up to float rounding of a different call path
        da = sc.decode(sc.EncodedWeight.from_bytes(sa[k]))
        db = sc.decode(sc.EncodedWeight.from_bytes(sb[k]))
        assert np.mean(da == db) > 0.99


@pytest.mark.parametrize(
    "config", [GPTQ4, sc.SQConfig(sparsity=0.5, bits=3, method="uniform")], ids=["gptq", "data-free"]
)
def test_an_executor_gives_the_same_streams(tiny, config):
    calibration = token_batches() if config.needs_calibration else None
    local, pooled = copy.deepcopy(tiny), copy.deepcopy(tiny)
    sc.compress_(local, config, calibration=calibration)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        sc.compress_(pooled, config, calibration=calibration, executor=pool)
    assert streams_of(local) == streams_of(pooled)


def test_sqconfig_calibration_fields_round_trip():
    cfg = sc.SQConfig(sparsity=0.5, bits=4, method="gptq", pruning="sparsegpt", damp=0.05, act_order=False)
    assert sc.SQConfig.from_json(cfg.to_json()) == cfg and cfg.needs_calibration
    assert not sc.SQConfig(sparsity=0.0, pruning="wanda", method="uniform").needs_calibration
    assert cfg.data_free() == sc.SQConfig(sparsity=0.5, bits=4, method="uniform", damp=0.05, act_order=False)
    with pytest.raises(ValueError, match="pruning"):
        sc.SQConfig(pruning="random")
    with pytest.raises(TypeError, match="act_order"):
        sc.SQConfig(act_order="yes")
    assert list(itertools.islice(sc.options.PRUNINGS, 3)) == ["magnitude", "wanda", "sparsegpt"]


def test_sqconfig_damping_defaults_by_pruning():
    from sparsecodec.config import PRUNE_DAMP, QUANTIZE_DAMP

    assert sc.SQConfig(sparsity=0.0, bits=4, method="gptq").solver_options().damp == QUANTIZE_DAMP == 0.01
    assert sc.SQConfig(sparsity=0.5, bits=4, method="gptq", pruning="sparsegpt").solver_options().damp == PRUNE_DAMP
    assert sc.SQConfig(sparsity=0.5, method="gptq", damp=0.02).solver_options().damp == 0.02
    with pytest.raises(ValueError, match="damp"):
        sc.SQConfig(damp=0.0)


# -------------------------------------------------------------------------------------- budget mode
def test_knapsack_choice_equals_brute_force(rng):
    from sparsecodec.calibration.budget import choose

    for _ in range(20):
        items = [[(float(rng.uniform(1, 10)), float(rng.uniform(0, 5))) for _ in range(3)] for _ in range(4)]
        budget = float(rng.uniform(10, 30))
        feasible = [
            combo
            for combo in itertools.product(range(3), repeat=4)
            if sum(items[i][k][0] for i, k in enumerate(combo)) <= budget
        ]
        if not feasible:
            with pytest.raises(ValueError, match="cannot be met"):
                choose(items, budget)
            continue
        best = min(sum(items[i][k][1] for i, k in enumerate(c)) for c in feasible)
        got = choose(items, budget)
        assert sum(items[i][k][0] for i, k in enumerate(got)) <= budget * (1 + 1e-3)
        assert sum(items[i][k][1] for i, k in enumerate(got)) <= best + 1e-9


def test_budget_mode_meets_the_budget_and_reports_its_choice(tiny):
    candidates = [(0.0, 8, 32), (0.0, 4, 32), (0.0, 2, 32), (0.5, 3, 32)]
    report = sc.compress_(tiny, calibration=token_batches(), target_bpw=3.5, candidates=candidates)
    assert report.budget is not None and len(report.budget.choices) == 8
    assert report.budget.estimated_bpw <= 3.5
    assert abs(report.total_bits_per_weight() - report.budget.estimated_bpw) < 0.05
    chosen = {(c.sparsity, c.bits, c.group_size) for c in report.budget.choices}
    assert chosen <= set(candidates) and len(chosen) > 1
    assert "budget 3.500 bits/weight" in str(report)


def test_budget_mode_bad_input(tiny):
    with pytest.raises(ValueError, match="needs calibration data"):
        sc.compress_(tiny, target_bpw=3.0)
    with pytest.raises(TypeError, match="not a mapping"):
        sc.compress_(tiny, {"_default": GPTQ4}, calibration=token_batches(), target_bpw=3.0)
    with pytest.raises(ValueError, match="budget mode only"):
        sc.compress_(tiny, GPTQ4, calibration=token_batches(), candidates=[(0.0, 4, 8)])
    with pytest.raises(ValueError, match="cannot be met"):
        sc.compress_(tiny, calibration=token_batches(), target_bpw=0.5, candidates=[(0.0, 4, 8)])
    with pytest.raises(ValueError, match="positive"):
        sc.compress_(tiny, calibration=token_batches(), target_bpw=-1.0)
    assert not any(isinstance(m, sc.nn.SQLinear) for m in tiny.modules())


SPARSE4 = sc.SQConfig(sparsity=0.5, bits=4, group_size=8, method="gptq", pruning="sparsegpt")


def test_model_sparsity_is_met_over_the_model_and_allocated_by_sensitivity(tiny):
    batches = token_batches()
    ref = [tiny(**b) for b in batches]
    per_model, per_layer = copy.deepcopy(tiny), copy.deepcopy(tiny)
    report = sc.compress_(per_model, SPARSE4, calibration=batches, sparsity_scope="model")
    sc.compress_(per_layer, SPARSE4, calibration=batches)
    plan = report.budget
    assert plan is not None and plan.target_sparsity == 0.5 and plan.target_bpw is None
    assert "sparsity 0.5 over the model" in str(report)
    weights = {c.name: c.weights for c in plan.choices}
    assert abs(plan.sparsity - 0.5) * sum(weights.values()) < 1.0  # exact up to one weight
    # What the streams hold, not only what was planned: each layer's kept count is its own.
    pruned = sum(r.stats["sparsity"] * r.stats["weights"] for r in report.converted)
    assert abs(pruned / sum(r.stats["weights"] for r in report.converted) - 0.5) < 0.01
    assert len({round(c.sparsity, 3) for c in plan.choices}) > 1
    for r in report.converted:
        assert r.stats["config"]["bits"] == 4 and r.stats["config"]["group_size"] == 8

    def err(m):
        with torch.no_grad():
            return sum(float(((m(**b) - r) ** 2).sum()) for b, r in zip(batches, ref, strict=True))

    assert err(per_model) < err(per_layer)


def test_plan_sparsity_gives_the_excess_back_on_the_largest_layer():
    from sparsecodec.calibration.budget import Sensitivity

    cands = [(0.2, 4, 8), (0.5, 4, 8), (0.8, 4, 8)]
    sizes = {"a": 1000, "b": 300, "c": 100}
    # Least cost with at most 840 of 1400 kept: a at 0.5, b and c at 0.2 (580 pruned); a, the largest,
    # then gives 20 weights back for exactly 560.
    costs = {"a": [1.0, 2.0, 9.0], "b": [0.1, 0.2, 0.3], "c": [1.0, 5.0, 20.0]}
    options = {n: [(4.0 * sizes[n], 0.0, c) for c in costs[n]] for n in sizes}
    sens = Sensitivity(SPARSE4, cands, list(sizes), sizes, options)
    plan = sens.plan_sparsity(0.4)
    chosen = {c.name: c.sparsity for c in plan.choices}
    assert chosen == pytest.approx({"a": 0.48, "b": 0.2, "c": 0.2})
    assert sum(chosen[n] * sizes[n] for n in sizes) == pytest.approx(0.4 * 1400)
    assert plan.configs["a"].sparsity == pytest.approx(chosen["a"])
    with pytest.raises(ValueError, match="below 1"):
        sens.plan_sparsity(1.0)


def test_model_sparsity_bad_input(tiny):
    before = copy.deepcopy(tiny.state_dict())
    with pytest.raises(ValueError, match="needs calibration data"):
        sc.compress_(tiny, SPARSE4, sparsity_scope="model")
    with pytest.raises(ValueError, match="sparsity > 0"):
        sc.compress_(tiny, GPTQ4, calibration=token_batches(), sparsity_scope="model")
    with pytest.raises(ValueError, match="exclude each other"):
        sc.compress_(tiny, SPARSE4, calibration=token_batches(), sparsity_scope="model", target_bpw=3.0)
    with pytest.raises(TypeError, match="not a mapping"):
        sc.compress_(tiny, {"_default": SPARSE4}, calibration=token_batches(), sparsity_scope="model")
    with pytest.raises(ValueError, match="'layer' or 'model'"):
        sc.compress_(tiny, SPARSE4, calibration=token_batches(), sparsity_scope="net")
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())


def test_a_dask_cluster_of_processes_gives_the_same_streams(tiny):
    distributed = pytest.importorskip("distributed")
    data_free = sc.SQConfig(sparsity=0.5, bits=3, group_size=8, method="uniform")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            for config, calibration in ((GPTQ4, token_batches()), (data_free, None)):
                local, remote = copy.deepcopy(tiny), copy.deepcopy(tiny)
                sc.compress_(local, config, calibration=calibration)
                sc.compress_(remote, config, calibration=calibration, executor=client.get_executor())
                assert streams_of(local) == streams_of(remote)
