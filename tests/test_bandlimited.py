"""Band-limited FFT convolution: the band rules, the native channel product, and the layers against
nn.Conv1d / nn.Conv2d (compress_rate 0) and against an independent oracle (compress_rate > 0)."""

from __future__ import annotations

import io
import itertools
import math
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import sparsecodec as sc  # noqa: E402
from sparsecodec._native import core  # noqa: E402
from sparsecodec.nn import BandLimitedConv1d, BandLimitedConv2d  # noqa: E402
from sparsecodec.nn.spectral_conv import (  # noqa: E402
    BandLimitedCorrelation,
    channel_product,
    filter_band,
    make_plan,
    product_backend,
)
from sparsecodec.spectral import band_limit, check_compress_rate, fft_grid, smooth_length  # noqa: E402

from conftest import available_simd_levels, best_simd_level  # noqa: E402

# torch's own reference convolution warns about 'same' padding with even kernels.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# -- the oracle: ordinary convolution, then the spectral low-pass, written from the definitions ----


def _fast_length(n: int) -> int:
    while any(p > 7 for p in _prime_factors(n)):
        n += 1
    return n


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _kept_frequencies(length: int, rate: float, ndim: int, one_sided: bool) -> torch.Tensor:
    """Boolean over the full (two-sided) frequency axis: kept by the authors' index rule."""
    freq = torch.fft.fftfreq(length, d=1.0 / length).round().long().abs()
    half = length // 2 + 1
    if ndim == 1:
        kept = half if rate == 0 else max(1, half - math.floor(half * rate) - 1)
        highest = kept - 1
    else:
        highest = max(0, math.floor(half * math.sqrt(1 - rate)) - 1)
        if not one_sided and 2 * highest + 1 >= length:
            return torch.ones(length, dtype=torch.bool)
    return freq <= highest


def oracle(layer, x: torch.Tensor, rate: float, grid: str = "compact") -> torch.Tensor:
    """The band-limited convolution of a (N, C, H, W) or (N, C, L) input with the layer's weight and
    bias: circular convolution on the grid by F.conv2d, full complex FFT, mask, inverse, crop."""
    one_d = x.dim() == 3
    weight = layer.weight.unsqueeze(-2) if one_d else layer.weight
    pads = layer._reversed_padding_repeated_twice
    xp = F.pad(x, pads, mode="constant" if layer.padding_mode == "zeros" else layer.padding_mode)
    if one_d:
        xp = xp.unsqueeze(-2)
    (kh, kw), (dh, dw) = weight.shape[-2:], ((1, layer.dilation[0]) if one_d else layer.dilation)
    (sh, sw) = (1, layer.stride[0]) if one_d else layer.stride
    hp, wp = xp.shape[-2:]
    if grid == "compact":
        gh, gw = (1 if one_d else _fast_length(hp)), _fast_length(wp)
    else:
        gh = 1 if one_d else 2 ** math.ceil(math.log2(hp + max(hp - dh * (kh - 1), dh * (kh - 1) + 1) - 1))
        gw = 2 ** math.ceil(math.log2(wp + max(wp - dw * (kw - 1), dw * (kw - 1) + 1) - 1))
    on_grid = F.pad(xp, (0, gw - wp, 0, gh - hp))
    wrapped = F.pad(on_grid, (0, dw * (kw - 1), 0, dh * (kh - 1)), mode="circular")
    y = F.conv2d(wrapped, weight, dilation=(dh, dw), groups=layer.groups)
    ndim = 1 if one_d else 2
    mask = _kept_frequencies(gh, rate, ndim, one_sided=False)[:, None] & _kept_frequencies(gw, rate, ndim, True)[None]
    y = torch.fft.ifft2(torch.fft.fft2(y) * mask).real
    y = y[..., : hp - dh * (kh - 1) : sh, : wp - dw * (kw - 1) : sw]
    if one_d:
        y = y.squeeze(-2)
    if layer.bias is not None:
        y = y + layer.bias.reshape(-1, *([1] * (y.dim() - 2)))
    return y


def _grads(y: torch.Tensor, params: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    return list(torch.autograd.grad(y, params, g))


def _assert_close(got: torch.Tensor, want: torch.Tensor, rtol: float = 2e-5) -> None:
    got, want = got.detach(), want.detach()
    scale = max(1.0, float(want.abs().max()))
    err = float((got - want).abs().max())
    assert err <= rtol * scale, f"max error {err} at scale {scale}"


def _compare(layer, reference_fn, x, params_ref, params_bl, rtol=2e-5):
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya, yb = reference_fn(xa), layer(xb)
    assert ya.shape == yb.shape
    _assert_close(yb, ya, rtol)
    for ga, gb in zip(_grads(ya, [xa, *params_ref]), _grads(yb, [xb, *params_bl]), strict=True):
        _assert_close(gb, ga, rtol)


# -- band rules ---------------------------------------------------------------------------------


def test_band_keeps_everything_at_rate_zero():
    for grid in [(70, 70), (9, 12), (1, 17), (64, 35)]:
        band = band_limit(grid, 0.0, 1 if grid[0] == 1 else 2)
        assert band.keeps_all and band.compress_rate == 0.0


def test_band_follows_the_authors_index_rule():
    band = band_limit((70, 70), 0.5)
    # half = 36, floor(36 * sqrt(0.5)) - 1 = 24: rows 0..24 and -24..-1, columns 0..24.
    assert (band.top, band.bottom, band.cols) == (25, 24, 25)
    assert band.row_frequencies() == list(range(46, 70)) + list(range(25))  # one run: -24 .. 24
    assert band.compress_rate == pytest.approx(1 - 49 * 25 / (70 * 36))
    for rate in (0.25, 0.5, 0.75):
        assert abs(band_limit((128, 128), rate).compress_rate - rate) < 0.03
    one_d = band_limit((1, 70), 0.5, ndim=1)  # discard floor(36 * 0.5) + 1 = 19 of 36
    assert (one_d.rows, one_d.cols) == (1, 17)
    assert band_limit((1, 70), 0.01, ndim=1).cols == 35  # any c > 0 drops at least one bin
    assert band_limit((8, 8), 0.99).kept == 1  # never less than the DC coefficient


@pytest.mark.parametrize("bad", ["0.5", True, None])
def test_compress_rate_type_errors(bad):
    with pytest.raises(TypeError, match="compress_rate"):
        check_compress_rate(bad)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_compress_rate_value_errors(bad):
    with pytest.raises(ValueError, match="compress_rate"):
        check_compress_rate(bad)
    with pytest.raises(ValueError, match="compress_rate"):
        BandLimitedConv2d(2, 2, 3, compress_rate=bad)


def test_grids():
    assert [smooth_length(n) for n in (1, 11, 66, 67, 70, 74, 97)] == [1, 12, 70, 70, 70, 75, 98]
    assert fft_grid(66, 3) == 70
    assert fft_grid(34, 3, "paper") == 128  # 34 + max(32, 3) - 1 = 65 -> 128, the authors' grid
    with pytest.raises(ValueError, match="fft_grid"):
        fft_grid(10, 3, "big")


# -- the native channel product ------------------------------------------------------------------


def _complex(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize(
    "groups,bins,rows,cols,depth",
    [(1, 9, 8, 8, 64), (2, 37, 5, 7, 9), (3, 3, 1, 1, 1), (1, 8, 3, 4, 0), (1, 5, 64, 5, 8)],
)
@pytest.mark.parametrize("conj_b", [False, True])
@pytest.mark.parametrize("strided", [False, True])
def test_native_product_simd_equals_scalar_bit_for_bit(groups, bins, rows, cols, depth, conj_b, strided, rng, threads):
    b = _complex(rng, groups, bins, depth, cols)
    if strided:  # a and out as the layer passes them: views of arrays whose bins are the last axis
        a = _complex(rng, rows, groups, depth, bins).transpose(1, 3, 0, 2)
    else:
        a = _complex(rng, groups, bins, rows, depth)
    want = np.einsum("gmik,gmkj->gmij", a.astype(np.complex128), np.conj(b) if conj_b else b.astype(np.complex128))
    results = {}
    levels = available_simd_levels()
    try:
        for level in levels:
            sc.set_simd_level(level)
            if strided:
                out = np.zeros((rows, groups, cols, bins), np.complex64).transpose(1, 3, 0, 2)
            else:
                out = np.zeros((groups, bins, rows, cols), np.complex64)
            core().spectral_product(a, b, conj_b, out)
            results[level] = np.ascontiguousarray(out)
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4 * max(1, depth))
    finally:
        sc.set_simd_level(best_simd_level())
    for level in levels[1:]:
        assert np.array_equal(results[level].view(np.uint32), results["scalar"].view(np.uint32))


def test_native_product_writes_only_its_slice(rng):
    # The forward pass writes one step of filters into the (batch, channels, bins) output.
    x = _complex(rng, 4, 6, 20)  # (batch, channels, bins), 2 groups of 3 channels
    w = _complex(rng, 2, 20, 3, 5)  # (groups, bins, channels per group, filters per group)
    y = np.zeros((4, 10, 20), np.complex64)
    a = x.reshape(4, 2, 3, 20).transpose(1, 3, 0, 2)
    out = y.reshape(4, 2, 5, 20).transpose(1, 3, 0, 2)[..., 1:4]
    core().spectral_product(a, np.ascontiguousarray(w[..., 1:4]), True, out)
    want = np.einsum("bgcm,gmcf->bgfm", x.reshape(4, 2, 3, 20), np.conj(w[..., 1:4]))
    np.testing.assert_allclose(y.reshape(4, 2, 5, 20)[:, :, 1:4], want, rtol=1e-5, atol=1e-5)
    assert not y.reshape(4, 2, 5, 20)[:, :, [0, 4]].any()


def test_native_product_rejects_bad_arguments(rng):
    a = _complex(rng, 1, 8, 2, 3)
    b = _complex(rng, 1, 8, 3, 4)
    out = np.zeros((1, 8, 2, 4), np.complex64)
    with pytest.raises(TypeError, match="complex64"):
        core().spectral_product(a.astype(np.complex128), b, False, out)
    with pytest.raises(TypeError, match="numpy"):
        core().spectral_product(a.tolist(), b, False, out)
    with pytest.raises(ValueError, match="disagree"):
        core().spectral_product(a, b[:, :, :2], False, out)
    with pytest.raises(ValueError, match="contiguous"):
        core().spectral_product(a, b[..., ::2], False, out[..., ::2])
    with pytest.raises(ValueError, match="overlaps"):
        core().spectral_product(out[..., :3], b, False, out)
    with pytest.raises(ValueError, match="writable"):
        out.flags.writeable = False
        core().spectral_product(a, b, False, out)


def test_torch_and_native_products_agree():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 45, 8, 16, dtype=torch.complex64, generator=gen)
    b = torch.randn(2, 45, 16, 5, dtype=torch.complex64, generator=gen)
    for conj_b in (False, True):
        outs = []
        for backend in ("native", "torch"):
            out = torch.ones(2, 45, 8, 5, dtype=torch.complex64)
            channel_product(a, b, conj_b, out, backend=backend)
            outs.append(out)
        _assert_close(outs[0], outs[1])
    with pytest.raises(ValueError, match="backend"):
        channel_product(a, b, True, out, backend="gpu")
    with pytest.raises(ValueError, match="native"):
        channel_product(
            a.to(torch.complex128), b.to(torch.complex128), True, out.to(torch.complex128), backend="native"
        )


def test_layer_gives_the_same_result_with_either_product():
    torch.manual_seed(8)
    layer = BandLimitedConv2d(8, 12, 3, padding=1, groups=2, compress_rate=0.5)
    x = torch.randn(3, 8, 10, 10)
    results = []
    for backend in ("native", "torch"):
        with product_backend(backend):
            xg = x.clone().requires_grad_()
            y = layer(xg)
            results.append([y, *_grads(y, [xg, layer.weight])])
    for got, want in zip(*results, strict=True):
        _assert_close(got, want)


# -- compress_rate 0: ordinary convolution ----------------------------------------------------------

CONV2D_GRID = [
    dict(stride=s, padding=p, padding_mode=m, dilation=d, groups=g, bias=b)
    for s, p, m, d, g, b in itertools.product(
        [1, 2, (2, 1)],
        [0, 1, (2, 1), "same", "valid"],
        ["zeros", "reflect", "circular", "replicate"],
        [1, 2],
        [1, 2],
        [True, False],
    )
    if not (p == "same" and s != 1)
]


@pytest.mark.parametrize("kwargs", CONV2D_GRID[::5], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_conv2d_equals_torch_at_rate_zero(kwargs):
    torch.manual_seed(len(str(kwargs)))
    conv = nn.Conv2d(4, 6, (3, 2), **kwargs)
    layer = BandLimitedConv2d.from_conv(conv, 0.0)
    x = torch.randn(2, 4, 11, 9)
    _compare(layer, conv, x, [conv.weight] + ([conv.bias] if conv.bias is not None else []),
             [layer.weight] + ([layer.bias] if layer.bias is not None else []))  # fmt: skip


CONV1D_GRID = [
    dict(stride=s, padding=p, padding_mode=m, dilation=d, groups=g, bias=b)
    for s, p, m, d, g, b in itertools.product(
        [1, 3], [0, 2, "same"], ["zeros", "reflect", "circular"], [1, 3], [1, 3], [True, False]
    )
    if not (p == "same" and s != 1)
]


@pytest.mark.parametrize("kwargs", CONV1D_GRID[::3], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_conv1d_equals_torch_at_rate_zero(kwargs):
    torch.manual_seed(len(str(kwargs)))
    conv = nn.Conv1d(3, 6, 4, **kwargs)
    layer = BandLimitedConv1d.from_conv(conv, 0.0)
    x = torch.randn(2, 3, 23)
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    _compare(layer, conv, x, params, [layer.weight] + ([layer.bias] if layer.bias is not None else []))


def test_rate_zero_on_bigger_maps_and_the_paper_grid():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, 7, padding=3)
    x = torch.randn(3, 16, 31, 40)
    for grid in ("compact", "paper"):
        layer = BandLimitedConv2d.from_conv(conv, 0.0, fft_grid=grid)
        _compare(layer, conv, x, [conv.weight, conv.bias], [layer.weight, layer.bias])


def test_unbatched_input():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    layer = BandLimitedConv2d.from_conv(conv, 0.0)
    x = torch.randn(2, 6, 7)
    _assert_close(layer(x), conv(x))
    conv1 = nn.Conv1d(2, 3, 3)
    _assert_close(BandLimitedConv1d.from_conv(conv1, 0.0)(x[:, 0]), conv1(x[:, 0]))


# -- compress_rate > 0: the independent oracle ------------------------------------------------------

ORACLE_GRID = [
    dict(stride=1, padding=0),
    dict(stride=2, padding=1, bias=False),
    dict(padding="same", dilation=2),
    dict(padding=2, groups=2, padding_mode="reflect"),
    dict(padding=(1, 3), padding_mode="circular", stride=(1, 2)),
    dict(padding="valid", dilation=(2, 1), groups=4),
]


@pytest.mark.parametrize("rate", [0.3, 0.5, 0.75])
@pytest.mark.parametrize("kwargs", ORACLE_GRID, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_equals_oracle(rate, kwargs, dtype):
    torch.manual_seed(1)
    layer = BandLimitedConv2d(4, 8, 3, compress_rate=rate, dtype=dtype, **kwargs)
    x = torch.randn(2, 4, 13, 10, dtype=dtype)
    params = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
    _compare(layer, lambda t: oracle(layer, t, rate), x, params, params, rtol=2e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("rate", [0.2, 0.6])
@pytest.mark.parametrize("kwargs", [dict(padding=3), dict(stride=2, dilation=2, groups=2, padding="valid")], ids=str)
def test_conv1d_equals_oracle(rate, kwargs):
    torch.manual_seed(2)
    layer = BandLimitedConv1d(4, 6, 5, compress_rate=rate, dtype=torch.float64, **kwargs)
    x = torch.randn(3, 4, 29, dtype=torch.float64)
    params = [layer.weight, layer.bias]
    _compare(layer, lambda t: oracle(layer, t, rate), x, params, params, rtol=1e-12)


def test_paper_grid_equals_oracle():
    torch.manual_seed(3)
    layer = BandLimitedConv2d(3, 5, 3, padding=1, compress_rate=0.5, fft_grid="paper", dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    _compare(layer, lambda t: oracle(layer, t, 0.5, "paper"), x, [layer.weight], [layer.weight], rtol=1e-12)
    assert layer.band((8, 8)).grid == (32, 32)  # 10 + max(8, 3) - 1 = 17, rounded up


@pytest.mark.parametrize("offset", [(0, 0), (1, 2)])
def test_gradcheck(offset):
    # offset: the input comes without its zero padding, which the filter phases account for.
    torch.manual_seed(4)
    layer = BandLimitedConv2d(2, 3, 3, compress_rate=0.6, dtype=torch.float64)
    kernel, dilation, _ = layer._geometry()
    band = layer._band_for_padded((7, 8))
    plan = make_plan(band, (7, 8), kernel, dilation, 1, torch.float64, torch.device("cpu"), offset)
    x = torch.randn(1, 2, 7 - 2 * offset[0], 8 - 2 * offset[1], dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    g, (kh, kw) = 1, plan.kernel

    def correlate(x, w, b):
        spectrum = filter_band(w.detach().reshape(g, 3, 2, kh, kw), plan)
        return BandLimitedCorrelation.apply(x, w, b, spectrum, plan)

    assert torch.autograd.gradcheck(correlate, (x, w, b), fast_mode=True)


# -- inference cache, speed mode ---------------------------------------------------------------------


def test_filter_spectra_are_kept_and_rebuilt_when_weights_change():
    torch.manual_seed(5)
    layer = BandLimitedConv2d(4, 4, 5, padding=2, compress_rate=0.5)
    x = torch.randn(2, 4, 12, 12)
    train_out = layer(x).detach()
    kept = layer._cached_spectrum[2]
    with torch.no_grad():
        first = layer(x)
        second = layer(x)
    assert layer._cached_spectrum[2] is kept  # same weight, same input size: reused
    assert torch.equal(first, second)
    _assert_close(first, train_out)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).square().sum().backward()
    opt.step()
    with torch.no_grad():
        after = layer(x)
    _assert_close(after, oracle(layer, x, 0.5).detach())
    assert not torch.allclose(after, first)
    with torch.no_grad():
        layer.weight.mul_(2)  # in place, outside autograd: the version counter moves
        _assert_close(layer(x), oracle(layer, x, 0.5))
        layer.load_state_dict({"weight": torch.randn_like(layer.weight), "bias": layer.bias.clone()})
        _assert_close(layer(x), oracle(layer, x, 0.5))
        layer.weight = nn.Parameter(torch.randn_like(layer.weight))
        _assert_close(layer(x), oracle(layer, x, 0.5))
        _assert_close(layer(x[..., :10, :11]), oracle(layer, x[..., :10, :11], 0.5))  # another input size
    layer.clear_spectrum_cache()
    assert layer._cached_spectrum is None


def test_layers_made_under_inference_mode_keep_spectra_and_see_in_place_writes():
    """Inference tensors have no version counter; the cache must still follow their values."""
    torch.manual_seed(6)
    with torch.inference_mode():
        layer = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5)
        x = torch.randn(2, 3, 10, 10)
        _assert_close(layer(x), oracle(layer, x, 0.5))
        kept = layer._cached_spectrum[2]
        layer(x)
        assert layer._cached_spectrum[2] is kept
        layer.weight.mul_(-3)  # allowed in place inside inference mode, with no counter to move
        _assert_close(layer(x), oracle(layer, x, 0.5))


def test_a_graph_whose_filter_spectra_were_rebuilt_fails_loudly():
    layer = BandLimitedConv2d(2, 2, 3, compress_rate=0.5)
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    y = layer(x)
    with torch.no_grad():
        layer.weight.add_(1.0)
    layer(x)  # rebuilds the kept spectra in place
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_speed_mode_picks_direct_for_small_kernels_and_gives_the_same_result(rate):
    torch.manual_seed(6)
    fast = BandLimitedConv2d(16, 16, 3, padding=1, stride=2, compress_rate=rate, algorithm="auto", dtype=torch.float64)
    exact = BandLimitedConv2d(16, 16, 3, padding=1, stride=2, compress_rate=rate, dtype=torch.float64)
    exact.load_state_dict(fast.state_dict())
    x = torch.randn(4, 16, 16, 16, dtype=torch.float64)
    assert fast._direct_is_faster(fast._plan((18, 18), torch.float64, x.device), 4)
    assert not exact._direct_is_faster(exact._plan((18, 18), torch.float64, x.device), 4)
    _compare(fast, exact, x, [exact.weight, exact.bias], [fast.weight, fast.bias], rtol=1e-12)
    big = BandLimitedConv2d(64, 64, 11, padding=5, algorithm="auto")
    assert not big._direct_is_faster(big._plan((74, 74), torch.float32, x.device), 8)


# -- compressed (spectral) form and serialization -----------------------------------------------------


def test_training_state_dict_is_interchangeable_with_nn_conv():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5)
    layer.load_state_dict(conv.state_dict(), strict=True)
    conv.load_state_dict(layer.state_dict(), strict=True)
    assert set(layer.state_dict()) == {"weight", "bias"}


@pytest.mark.parametrize("layer_cls,size", [(BandLimitedConv2d, (12, 10)), (BandLimitedConv1d, (20,))])
def test_spectral_form_round_trips_with_only_the_kept_coefficients(layer_cls, size):
    torch.manual_seed(7)
    layer = layer_cls(4, 6, 3, padding=1, groups=2, compress_rate=0.5)
    x = torch.randn(2, 4, *size)
    want = layer(x).detach()
    layer.freeze_spectrum(size)
    assert layer.is_spectral and layer.weight is None
    band = layer.band(size)
    state = layer.state_dict()
    assert set(state) == {"weight_spectrum", "spectrum_input_size", "bias"}
    assert tuple(state["weight_spectrum"].shape) == (6, 2, band.rows, band.cols, 2)
    assert band.kept < band.total
    with torch.no_grad():
        _assert_close(layer(x), want)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    other = layer_cls(4, 6, 3, padding=1, groups=2, compress_rate=0.5)
    other.freeze_spectrum(tuple(n + 3 for n in size))  # any size: the dict brings its own
    other.load_state_dict(loaded, strict=True)
    assert tuple(other.spectrum_input_size.tolist()) == size
    xg = x.clone().requires_grad_()
    out = other(xg)
    _assert_close(out.detach(), want)
    out.sum().backward()  # gradients still reach the input and the bias
    assert xg.grad is not None and other.bias.grad is not None
    with pytest.raises(ValueError, match="holds filter spectra for inputs of size"):
        other(torch.randn(2, 4, *(n + 1 for n in size)))
    with pytest.raises(RuntimeError, match="already"):
        other.freeze_spectrum(size)
    with pytest.raises(RuntimeError, match="fixed"):
        other.compress_rate = 0.2


def test_pickling_leaves_the_kept_spectra_out():
    layer = BandLimitedConv2d(2, 3, 3, compress_rate=0.5)
    x = torch.randn(1, 2, 9, 9)
    want = layer(x)
    copy = pickle.loads(pickle.dumps(layer))
    assert copy._cached_spectrum is None and layer._cached_spectrum is not None
    _assert_close(copy(x), want)


def test_spectral_state_dict_errors_are_clear():
    layer = BandLimitedConv2d(2, 2, 3, compress_rate=0.5)
    layer.freeze_spectrum((8, 8))
    state = layer.state_dict()
    fresh = BandLimitedConv2d(2, 2, 3, compress_rate=0.5)
    with pytest.raises(RuntimeError, match="freeze_spectrum"):
        fresh.load_state_dict(state)
    fresh.freeze_spectrum((9, 9))
    bad = dict(state, weight_spectrum=state["weight_spectrum"][:, :, :-1])
    with pytest.raises(RuntimeError, match="does not match"):
        fresh.load_state_dict(bad)


# -- argument errors ------------------------------------------------------------------------------------


def test_bad_arguments():
    with pytest.raises(ValueError, match="fft_grid"):
        BandLimitedConv2d(2, 2, 3, fft_grid="huge")
    with pytest.raises(ValueError, match="algorithm"):
        BandLimitedConv2d(2, 2, 3, algorithm="winograd")
    with pytest.raises(TypeError, match="float32 and float64"):
        BandLimitedConv2d(2, 2, 3, dtype=torch.float16)
    with pytest.raises(ValueError, match="same"):
        BandLimitedConv2d(2, 2, 3, padding="same", stride=2)
    with pytest.raises(TypeError, match="Conv2d"):
        BandLimitedConv2d.from_conv(nn.Conv1d(2, 2, 3), 0.5)
    layer = BandLimitedConv2d(2, 3, 5, compress_rate=0.5)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        layer(torch.randn(2, 2, 8, 8, 1))
    with pytest.raises(ValueError, match="input channels"):
        layer(torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.randn(1, 2, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        layer(torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="input_size"):
        layer.band((8,))
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        BandLimitedConv1d(2, 2, 3)(torch.randn(2, 2, 8, 8))
