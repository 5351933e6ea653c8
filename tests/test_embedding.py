"""SQEmbedding: lookups equal F.embedding on the decoded table, only looked-up rows are decoded, the
op is registered, state_dict / torch.load / sc.save round trips, and compress_ converts embeddings."""

from __future__ import annotations

import dataclasses
import importlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import sparsecodec as sc  # noqa: E402
from sparsecodec.nn import SQEmbedding, SQLinear, ops  # noqa: E402
from sparsecodec.nn import registry as layer_registry  # noqa: E402

matmul_module = importlib.import_module("sparsecodec.matmul")  # sc.matmul is the function

ROWS, DIM = 97, 40
CONFIGS = {
    "S0-q2": sc.SQConfig(sparsity=0.0, bits=2),
    "S0.5-q2": sc.SQConfig(sparsity=0.5, bits=2),
    "S0-q8": sc.SQConfig(sparsity=0.0, bits=8),
    "S0.5-q8": sc.SQConfig(sparsity=0.5, bits=8, group_size=8),
}
PADDING = [None, 0, 5, -1]
_LAYERS: dict = {}


def _layer(config_id: str, padding_idx):
    """An SQEmbedding of a random table (built once per config and padding index) and its decoded table."""
    key = (config_id, padding_idx)
    if key not in _LAYERS:
        torch.manual_seed(len(_LAYERS))
        emb = nn.Embedding(ROWS, DIM, padding_idx=padding_idx)
        layer = SQEmbedding.from_embedding(emb, CONFIGS[config_id])
        _LAYERS[key] = (layer, torch.from_numpy(sc.decode(layer.encoded_weights()[0])))
    return _LAYERS[key]


def _reference(idx, table, padding_idx):
    return F.embedding(idx.long(), table, padding_idx=padding_idx)


@pytest.mark.parametrize("config_id", list(CONFIGS))
@pytest.mark.parametrize("padding_idx", PADDING)
@pytest.mark.parametrize("shape", [(), (1,), (13,), (4, 9), (2, 3, 5), (0,), (3, 0, 2)])
def test_lookup_equals_f_embedding_on_the_decoded_table(config_id, padding_idx, shape):
    layer, table = _layer(config_id, padding_idx)
    idx = torch.randint(0, ROWS, shape)
    if padding_idx is not None and idx.numel():
        idx.view(-1)[0] = layer.padding_idx  # the padding row is looked up too
    out = layer(idx)
    assert out.dtype == torch.float32 and out.shape == (*shape, DIM)
    assert torch.equal(out, _reference(idx, table, padding_idx))
    assert torch.equal(layer.weight.detach(), table)
    assert torch.equal(layer.to_embedding()(idx), out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=4),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8]),
    config_id=st.sampled_from(list(CONFIGS)),
    padding_idx=st.sampled_from(PADDING),
    seed=st.integers(0, 2**31 - 1),
)
def test_lookup_property(shape, dtype, config_id, padding_idx, seed):
    layer, table = _layer(config_id, padding_idx)
    high = min(ROWS, 128 if dtype == torch.int8 else 256 if dtype == torch.uint8 else ROWS)
    idx = torch.randint(0, high, tuple(shape), generator=torch.Generator().manual_seed(seed)).to(dtype)
    assert torch.equal(layer(idx), _reference(idx, table, padding_idx))
    assert torch.equal(torch.ops.sparsecodec.sq_embedding(idx, layer.encoded, DIM), _reference(idx, table, None))


def test_only_the_looked_up_rows_are_decoded_and_each_distinct_one_once_in_long_lookups(monkeypatch):
    layer, table = _layer("S0.5-q2", None)
    calls = []
    real = matmul_module.decode_row_set

    def spy(enc, rows):
        calls.append(np.array(rows))
        return real(enc, rows)

    monkeypatch.setattr(matmul_module, "decode_row_set", spy)
    monkeypatch.setattr(sc, "decode", lambda *a, **k: pytest.fail("the whole table was decoded"))
    # a short lookup decodes the rows as asked, repeats included
    idx = torch.tensor([[7, 3, 7], [3, 7, 50]])
    assert torch.equal(layer(idx), _reference(idx, table, None))
    assert len(calls) == 1 and calls[0].tolist() == [7, 3, 7, 3, 7, 50]
    assert torch.equal(torch.ops.sparsecodec.sq_embedding(idx, layer.encoded, DIM), _reference(idx, table, None))
    assert len(calls) == 2
    # a long one decodes each distinct row once, then gathers
    long = torch.tensor([7, 3, 50] * (ops.DIRECT_LOOKUP_ROWS // 3 + 1)).reshape(3, -1)
    assert torch.equal(layer(long), _reference(long, table, None))
    assert len(calls) == 3 and calls[-1].tolist() == [3, 7, 50]
    distinct = torch.arange(ops.DIRECT_LOOKUP_ROWS + 1).flip(0)  # long, no repeats: decoded in the order asked
    assert torch.equal(layer(distinct), _reference(distinct, table, None))
    assert calls[-1].tolist() == distinct.tolist()


def test_the_parsed_stream_is_cached(monkeypatch):
    layer, _ = _layer("S0-q2", None)
    layer(torch.tensor([1, 2]))

    def no_parse(*args, **kwargs):
        raise AssertionError("the stream was parsed again")

    monkeypatch.setattr(sc.EncodedWeight, "from_bytes", no_parse)
    layer(torch.tensor([3, 4]))
    torch.ops.sparsecodec.sq_embedding(torch.tensor([5]), layer.encoded, DIM)


def test_bad_indices_are_refused_with_clear_errors():
    layer, _ = _layer("S0-q2", None)
    for bad in (torch.tensor([1.0]), torch.tensor([True]), torch.tensor([1 + 0j])):
        with pytest.raises(TypeError, match="integer dtype"):
            layer(bad)
    with pytest.raises(TypeError, match="tensor"):
        layer([1, 2])
    long = torch.arange(ops.DIRECT_LOOKUP_ROWS + 1) - 1  # past the short lookups' path
    for idx, bad in (
        (torch.tensor([0, ROWS]), ROWS),
        (torch.tensor([-1, 2]), -1),
        (torch.tensor(ROWS + 5), ROWS + 5),
        (long, -1),
    ):
        with pytest.raises(ValueError, match=f"embedding index {bad} is out of range"):
            layer(idx)
    with pytest.raises(ValueError, match="out of range"):
        torch.ops.sparsecodec.sq_embedding(torch.tensor([ROWS]), layer.encoded, DIM)
    with pytest.raises(ValueError, match=rf"row indices must lie in \[0, {ROWS}\), got 0 .. {ROWS}"):
        matmul_module.decode_row_set(layer.encoded_weights()[0], np.array([0, ROWS, 3]))


def test_a_decode_error_with_every_index_in_range_is_not_reworded(monkeypatch):
    from sparsecodec import _native

    layer, _ = _layer("S0-q2", None)
    layer(torch.tensor([1]))

    def failing(*args):
        raise ValueError("the slice is damaged")

    monkeypatch.setattr(_native.core(), "decode_row_set", failing)
    for idx in (torch.tensor([1, 2]), torch.arange(ops.DIRECT_LOOKUP_ROWS + 1)):
        with pytest.raises(ValueError, match="the slice is damaged"):
            layer(idx)


def test_unsupported_options_raise_value_error_naming_the_option():
    for kwargs, option in [
        ({"max_norm": 1.0}, "max_norm"),
        ({"sparse": True}, "sparse"),
        ({"scale_grad_by_freq": True}, "scale_grad_by_freq"),
    ]:
        with pytest.raises(ValueError, match=option):
            SQEmbedding.from_embedding(nn.Embedding(10, 4, **kwargs), sc.SQConfig(sparsity=0.0))
    with pytest.raises(TypeError, match="nn.Embedding"):
        SQEmbedding.from_embedding(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="padding_idx"):
        SQEmbedding(sc.encode(np.ones((10, 4), np.float32), sparsity=0.0), padding_idx=10)


def test_padding_idx_normalised_like_nn_embedding_and_in_repr():
    enc = sc.encode(np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32), sparsity=0.0)
    assert SQEmbedding(enc, padding_idx=-1).padding_idx == nn.Embedding(10, 4, padding_idx=-1).padding_idx == 9
    layer = SQEmbedding(enc, padding_idx=2)
    text = repr(layer)
    assert "10, 4, padding_idx=2" in text and "bits=" in text and "bits_per_weight=" in text
    assert "padding_idx" not in repr(SQEmbedding(enc))
    assert layer.to_embedding().padding_idx == 2
    with pytest.raises(ValueError, match="shape"):
        SQEmbedding.from_embedding(nn.Embedding(11, 4), encoded=enc)
    assert SQEmbedding.from_embedding(nn.Embedding(10, 4), encoded=enc).encoded_weights()[0] is not None


def test_no_gradient_to_the_table_and_op_registration():
    layer, _ = _layer("S0.5-q2", 0)
    idx = torch.randint(0, ROWS, (3, 4))
    assert not layer(idx).requires_grad
    assert list(layer.parameters()) == []
    with pytest.raises(RuntimeError, match="cannot be trained"):
        layer.weight.sum().backward()
    torch.library.opcheck(torch.ops.sparsecodec.sq_embedding, (idx, layer.encoded, DIM))


def test_torch_compile_fullgraph_matches_eager():
    layer, table = _layer("S0-q8", None)
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    for shape in [(5,), (2, 7)]:
        idx = torch.randint(0, ROWS, shape)
        assert torch.equal(compiled(idx), _reference(idx, table, None))


def test_state_dict_round_trip_strict_and_weights_only():
    torch.manual_seed(1)
    layer = SQEmbedding.from_embedding(nn.Embedding(60, 12, padding_idx=1), sc.SQConfig(sparsity=0.5, bits=2))
    other = SQEmbedding.from_embedding(nn.Embedding(60, 12, padding_idx=1), sc.SQConfig(sparsity=0.0, bits=8))
    idx = torch.randint(0, 60, (4, 5))
    assert not torch.equal(other(idx), layer(idx))
    assert set(layer.state_dict()) == {"encoded"}
    other.load_state_dict(layer.state_dict(), strict=True)
    assert torch.equal(other(idx), layer(idx))
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    fresh = SQEmbedding.from_embedding(nn.Embedding(60, 12), sc.SQConfig(sparsity=0.9, bits=1))
    fresh.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    assert torch.equal(fresh(idx), layer(idx))
    assert fresh.encoded.dtype == torch.uint8
    # a stream of another shape, or a damaged one, is refused
    wrong = SQEmbedding.from_embedding(nn.Embedding(61, 12), sc.SQConfig(sparsity=0.5))
    with pytest.raises(RuntimeError, match="shape|holds"):
        wrong.load_state_dict(layer.state_dict())
    sd = layer.state_dict()
    sd["encoded"] = sd["encoded"].clone()
    sd["encoded"][40] ^= 1
    with pytest.raises(RuntimeError, match="checksum"):
        other.load_state_dict(sd)


class TinyLM(nn.Module):
    def __init__(self, tied: bool = False, padding_idx=None):
        super().__init__()
        self.embed = nn.Embedding(50, 16, padding_idx=padding_idx)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, idx):
        return self.head(torch.relu(self.proj(self.embed(idx))))


def _fresh_lm(**kwargs):
    torch.manual_seed(0)
    return TinyLM(**kwargs)


def test_compress_converts_embeddings_with_a_single_config_and_kind_keys():
    model = _fresh_lm(padding_idx=3)
    report = sc.compress_(model, sc.SQConfig(sparsity=0.5, bits=2))
    assert {r.name for r in report.converted} == {"embed", "proj", "head"}
    assert isinstance(model.embed, SQEmbedding) and model.embed.padding_idx == 3
    assert isinstance(model.proj, SQLinear)
    assert model(torch.randint(0, 50, (2, 6))).shape == (2, 6, 50)
    again = sc.compress_(model, sc.SQConfig())
    assert {r.name for r in again.skipped if r.reason == "already compressed"} == {"embed", "proj", "head"}

    model = _fresh_lm()
    report = sc.compress_(model, {"_embedding": None, "_default": sc.SQConfig(sparsity=0.5)})
    assert isinstance(model.embed, nn.Embedding) and isinstance(model.proj, SQLinear)
    assert "_embedding" in next(r.reason for r in report.skipped if r.name == "embed")

    # kind keys win over _default; exact names and patterns win over kind keys
    model = _fresh_lm()
    report = sc.compress_(
        model,
        {
            "head": sc.SQConfig(bits=3),
            "_linear": sc.SQConfig(bits=1),
            "_embedding": sc.SQConfig(sparsity=0.0, bits=4),
            "_default": None,
        },
    )
    bits = {r.name: r.stats["config"]["bits"] for r in report.converted}
    assert bits == {"embed": 4, "proj": 1, "head": 3}
    model = _fresh_lm()
    report = sc.compress_(model, {"re:emb.*": None, "_embedding": sc.SQConfig(), "_linear": sc.SQConfig()})
    assert {r.name for r in report.converted} == {"proj", "head"}


def test_pruned_tables_take_the_linear_layout_unless_told_otherwise():
    """A looked-up row of a pruned table decodes its own slices only with the linear layout (the
    scatter layout, encode's default for pruned matrices, would decode the row's whole group)."""
    model = _fresh_lm()
    sc.compress_(model, sc.SQConfig(sparsity=0.5, bits=2))
    assert model.embed.encoded_weights()[0].xor.layout == "linear"
    assert model.proj.encoded_weights()[0].xor.layout == "scatter"  # linear layers keep encode's choice
    table = model.embed.encoded_weights()[0]
    rows = np.array([7, 0, 49, 7])
    assert np.array_equal(model.embed(torch.from_numpy(rows)).numpy(), sc.decode(table)[rows])
    emb = nn.Embedding(64, 32)
    assert SQEmbedding.from_embedding(emb, sc.SQConfig(sparsity=0.5)).encoded_weights()[0].xor.layout == "linear"
    told = SQEmbedding.from_embedding(emb, sc.SQConfig(sparsity=0.5, layout="scatter"))
    assert told.encoded_weights()[0].xor.layout == "scatter"


def test_compress_skips_tied_and_unsupported_embeddings_with_reasons():
    model = _fresh_lm(tied=True)
    report = sc.compress_(model, sc.SQConfig(sparsity=0.5))
    reasons = {r.name: r.reason for r in report.skipped}
    assert "tied" in reasons["embed"] and "tied" in reasons["head"]
    assert [r.name for r in report.converted] == ["proj"]
    assert model.head.weight is model.embed.weight

    model = nn.Sequential(nn.Embedding(20, 8, max_norm=1.0), nn.Linear(8, 2))
    report = sc.compress_(model, sc.SQConfig(sparsity=0.5))
    assert "max_norm" in report.skipped[0].reason and isinstance(model[0], nn.Embedding)
    assert isinstance(model[1], SQLinear)


def test_a_failing_conversion_leaves_the_model_unchanged(monkeypatch):
    model = _fresh_lm()
    with torch.no_grad():
        model.embed.weight[4, 2] = float("nan")  # encode refuses non-finite weights
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules = dict(model.named_children())
    with pytest.raises(ValueError, match="finite"):
        sc.compress_(model, sc.SQConfig(sparsity=0.5))
    assert dict(model.named_children()) == modules
    assert all(torch.allclose(v, before[k], rtol=0, atol=0, equal_nan=True) for k, v in model.state_dict().items())

    # a layer that fails to build, after the others were built: nothing is swapped in either
    model = _fresh_lm()
    modules = dict(model.named_children())
    kind = layer_registry.LAYER_KINDS["embedding"]

    def boom(*args):
        raise ValueError("cannot build")

    monkeypatch.setitem(layer_registry.LAYER_KINDS, "embedding", dataclasses.replace(kind, build=boom))
    with pytest.raises(ValueError, match="cannot build"):
        sc.compress_(model, sc.SQConfig(sparsity=0.5))
    assert dict(model.named_children()) == modules


def test_save_load_and_inspect_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    from sparsecodec.inspection import inspect_file, summarize_model

    model = _fresh_lm(padding_idx=-1)
    sc.compress_(model, {"_embedding": sc.SQConfig(sparsity=0.0, bits=4), "_default": sc.SQConfig(sparsity=0.5)})
    idx = torch.randint(0, 50, (3, 4))
    expected = model(idx).detach()
    path = tmp_path / "lm.safetensors"
    sc.save(model, path)
    reloaded = sc.load(path, _fresh_lm())
    assert isinstance(reloaded.embed, SQEmbedding) and reloaded.embed.padding_idx == 49
    assert torch.equal(reloaded(idx).detach(), expected)

    rows = {r.name: r for r in inspect_file(path).layers}
    assert rows["embed"].kind == "SQEmbedding" and rows["embed"].shape == (50, 16) and rows["embed"].compressed
    assert rows["embed"].bits and rows["embed"].total_bpw < 32
    live = {r.name: r for r in summarize_model(reloaded)}
    assert live["embed"].shape == (50, 16) and live["embed"].total_bpw == pytest.approx(rows["embed"].total_bpw)

    # a dense embedding is listed as such
    model = _fresh_lm()
    sc.compress_(model, {"_embedding": None, "_default": sc.SQConfig(sparsity=0.5)})
    sc.save(model, tmp_path / "dense_embed.safetensors")
    rows = {r.name: r for r in inspect_file(tmp_path / "dense_embed.safetensors").layers}
    assert not rows["embed"].compressed and rows["proj"].compressed
