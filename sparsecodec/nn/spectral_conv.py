"""Band-limited FFT cross-correlation in torch: the band transforms, the channel product and autograd.

Everything here works on 2-D maps (a 1-D convolution is a 2-D one on a ``(1, n)`` grid) and
computes the stride-1 valid correlation ``y = x_pad ⋆ w + b``, band limited: on the FFT grid of the
plan, only the coefficients of its :class:`SpectralBand` enter the products, for the input, the
filter and (in the backward pass) the output gradient. The input comes either padded, or unpadded
with its zero padding folded into the filters' phases (``offset``). Non-zero padding modes and the
stride are left to the layer, as ordinary differentiable torch ops.

* Input and gradient maps go to the kept columns of their spectrum by a real matrix product along
  the width, then by ``torch.fft.fft`` of those columns along the height; the band is gathered
  into a bins-first layout for the product. Bands are stored column by column (bins = (column,
  row)). The inverse mirrors it: an inverse FFT of the kept columns along the height, then one
  real matrix product from the kept columns straight to the output pixels. All of it shrinks with
  the band.
* Filters have few taps, so their band is computed as two small DFTs by matrix product (taps ->
  kept frequencies), and the weight gradient goes back the same way (kept frequencies -> taps).
  Dilation and the zero padding in front of the input are just the positions of the taps in those
  DFT matrices; the bias is added to the zero-frequency coefficient.
* The contraction over channels at each kept frequency runs in the native kernel
  (``csrc/spectral_product.cpp``) for complex64 CPU tensors and as a batched complex matmul otherwise.
* The filters' band (``F x C/g`` maps of the grid's size: often tens of MB) is computed once per
  weight and input size by the layer, which keeps it for the backward pass and for inference; the
  weight gradient's band of the same size is produced a few filters at a time.
* Intermediate spectra that live only within one call go to per-thread scratch buffers that are
  reused from call to call: fresh buffers of tens of MB cost a page fault per 4 KiB on every call.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.autograd.function import once_differentiable

from .. import _native
from ..spectral import SpectralBand

COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128}

# Weight-gradient spectra produced per step of the backward pass.
CHUNK_BYTES = 8 << 20

BACKENDS = ("auto", "native", "torch")
_default_backend = "auto"


@dataclass(frozen=True, eq=False)
class CorrelationPlan:
    """A band and the small DFT matrices that map filter taps to it and back."""

    band: SpectralBand
    padded: tuple[int, int]  # input size after padding
    out: tuple[int, int]  # stride-1 output size
    kernel: tuple[int, int]
    groups: int
    offset: tuple[int, int]  # zero padding in front of the input that the filter phases account for
    to_band_rows: torch.Tensor | None  # (rows, kh) complex; None on a 1-row grid
    to_band_cols: torch.Tensor  # (kw, 2 * cols) real: (re, im) interleaved per column
    to_taps_rows: torch.Tensor | None  # (kh, rows) complex
    to_taps_cols: torch.Tensor  # (2 * cols, kw) real
    _forward_cols: dict[int, torch.Tensor] = field(default_factory=dict)
    _inverse_cols: dict[int, torch.Tensor] = field(default_factory=dict)
    _row_shifts: dict[int, torch.Tensor] = field(default_factory=dict)

    def row_shift(self, height: int) -> torch.Tensor:
        """(height, 1) complex: exp(-2 pi i bottom h / grid_h), which moves the inverse FFT of the kept
        rows (stored from frequency -bottom on) back to frequency 0."""
        shift = self._row_shifts.get(height)
        if shift is None:
            angle = _angles([self.band.bottom], torch.arange(height), self.band.grid[0])[0]
            shift = torch.polar(torch.ones_like(angle), -angle)[:, None].to(self.to_band_cols.device)
            shift = shift.to(COMPLEX_OF[self.to_band_cols.dtype])
            self._row_shifts[height] = shift
        return shift

    def forward_cols(self, width: int) -> torch.Tensor:
        """(width, 2 * cols) real: the DFT along the width from ``width`` points at the grid's start
        to the kept columns, (re, im) interleaved."""
        matrix = self._forward_cols.get(width)
        if matrix is None:
            angle = _angles(self.band.cols, torch.arange(width), self.band.grid[1])  # (cols, width)
            pairs = torch.stack((torch.cos(angle), -torch.sin(angle)), dim=1)
            matrix = pairs.reshape(2 * self.band.cols, width).T.contiguous().to(self.to_taps_cols)
            self._forward_cols[width] = matrix
        return matrix

    def inverse_cols(self, width: int) -> torch.Tensor:
        """(2 * cols, width) real: the inverse real DFT along the width from the kept columns, (re, im)
        interleaved, to the first ``width`` points of the grid (with the grid's 1 / size)."""
        matrix = self._inverse_cols.get(width)
        if matrix is None:
            angle = _angles(self.band.cols, torch.arange(width), self.band.grid[1])  # (cols, width)
            scale = _column_weights(self.band) / self.band.grid[1]  # the height's 1 / size is the ifft's
            pairs = torch.stack((torch.cos(angle), -torch.sin(angle)), dim=1) * scale[:, None, None]
            matrix = pairs.reshape(2 * self.band.cols, width).to(self.to_taps_cols)
            self._inverse_cols[width] = matrix
        return matrix


def _angles(frequencies: int | list[int], positions: torch.Tensor, length: int) -> torch.Tensor:
    """2 pi f p / length for every frequency f (a count means 0 .. count - 1) and grid position p,
    from exact integer products reduced modulo the grid, in float64."""
    f = torch.arange(frequencies) if isinstance(frequencies, int) else torch.tensor(frequencies)
    return ((f[:, None] * positions[None, :]) % length).double() * (2 * math.pi / length)


def _column_weights(band: SpectralBand) -> torch.Tensor:
    """How often an inverse real FFT counts each kept column: twice (it and its mirror image), except
    the zero frequency and, on an even grid, the Nyquist column."""
    weight = torch.full((band.cols,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if band.grid[1] % 2 == 0 and band.cols == band.grid[1] // 2 + 1:
        weight[-1] = 1.0
    return weight


def make_plan(
    band: SpectralBand,
    padded: tuple[int, int],
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    dtype: torch.dtype,
    device: torch.device,
    offset: tuple[int, int] = (0, 0),
) -> CorrelationPlan:
    """The plan of a valid correlation of a ``padded`` input with a ``kernel`` (dilated by ``dilation``).

    With an ``offset``, the input is given without its first ``offset`` rows and columns of zero
    padding (and without the padding after it): it sits at the grid's origin, which shifts the
    circular correlation by ``offset``. The filter taps move back by as much instead (tap u lands
    at ``u * dilation - offset`` modulo the grid), which gives the same result without a padded copy.
    """
    (grid_h, grid_w), (kh, kw), (dh, dw) = band.grid, kernel, dilation
    out = (padded[0] - dh * (kh - 1), padded[1] - dw * (kw - 1))
    if min(out) < 1:
        raise ValueError(f"the padded input {padded} is smaller than the dilated kernel")
    row_taps = torch.arange(kh) * dh - offset[0]
    col_taps = torch.arange(kw) * dw - offset[1]
    row_angle = _angles(band.row_frequencies(), row_taps, grid_h)
    row_phase = torch.polar(torch.ones_like(row_angle), -row_angle)  # (rows, kh)
    col_angle = _angles(band.cols, col_taps, grid_w)  # (cols, kw)
    cos, sin = torch.cos(col_angle), torch.sin(col_angle)
    to_band_cols = torch.stack((cos, -sin), dim=1).reshape(2 * band.cols, kw).T  # x @ -> (re, im) pairs
    scale = _column_weights(band) / (grid_h * grid_w)
    to_taps_cols = (torch.stack((cos, -sin), dim=1) * scale[:, None, None]).reshape(2 * band.cols, kw)
    complex_dtype = COMPLEX_OF[dtype]

    def real(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype).contiguous()

    def cplx(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=complex_dtype).contiguous()

    one_row = grid_h == 1
    return CorrelationPlan(
        band=band,
        padded=padded,
        out=out,
        kernel=kernel,
        groups=groups,
        offset=offset,
        to_band_rows=None if one_row else cplx(row_phase),
        to_band_cols=real(to_band_cols),
        to_taps_rows=None if one_row else cplx(row_phase.conj().T),
        to_taps_cols=real(to_taps_cols),
    )


# -- scratch buffers -------------------------------------------------------------------------


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}


_SCRATCH = _Scratch()


def scratch(tag: str, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A reusable buffer of ``shape`` for a result that lives only until the next use of ``tag`` in
    this thread: never returned to a caller outside this module nor saved for backward. One
    buffer per tag, dtype and device, grown as needed."""
    dtype = like.dtype if dtype is None else dtype
    key, numel = (tag, dtype, like.device), math.prod(shape)
    buf = _SCRATCH.buffers.get(key)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype, device=like.device)
        _SCRATCH.buffers[key] = buf
    return buf[:numel].view(shape)


# -- transforms -------------------------------------------------------------------------------


def _row_runs(band: SpectralBand) -> list[tuple[slice, slice]]:
    """(kept rows in the band, the same rows in the full spectrum): the negative, then the low rows
    (the storage order of :meth:`SpectralBand.row_frequencies`)."""
    grid_h = band.grid[0]
    runs = [(slice(band.bottom, band.rows), slice(0, band.top))]
    if band.bottom:
        runs.insert(0, (slice(0, band.bottom), slice(grid_h - band.bottom, grid_h)))
    return runs


def band_rfft2(x: torch.Tensor, plan: CorrelationPlan) -> torch.Tensor:
    """The kept columns of the grid-sized FFT of ``x`` (real, ``(..., h, w)``, zero-extended to the
    grid), column by column: ``(..., cols, grid_h)``, in a scratch buffer. The transform along the
    width, to the kept columns only, is one real matrix product; the one along the height is an FFT
    of those columns along the contiguous axis. Both shrink with the band."""
    band = plan.band
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    complex_dtype = COMPLEX_OF[x.dtype]
    half = scratch("width-dft", (*lead, h, band.cols, 2), x)
    torch.matmul(x.reshape(-1, w), plan.forward_cols(w), out=half.view(-1, 2 * band.cols))
    columns = scratch("columns", (*lead, band.cols, h), x, complex_dtype)
    columns.copy_(torch.view_as_complex(half).transpose(-1, -2))
    if band.grid[0] == 1:
        return columns
    spectrum = scratch("columns-fft", (*lead, band.cols, band.grid[0]), x, complex_dtype)
    return torch.fft.fft(columns, n=band.grid[0], dim=-1, out=spectrum)


def band_mask(band: SpectralBand, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """1 on the kept coefficients of a one-sided spectrum ``(grid_h, grid_w // 2 + 1)``, 0 elsewhere."""
    mask = torch.zeros((band.grid[0], band.grid[1] // 2 + 1), dtype=dtype, device=device)
    for _, rows in _row_runs(band):
        mask[rows, : band.cols] = 1
    return mask


def band_irfft2(spectrum: torch.Tensor, plan: CorrelationPlan, out_h: int, out_w: int) -> torch.Tensor:
    """The top-left ``(out_h, out_w)`` corner of the inverse FFT of a band ``(..., cols, rows)`` (zeros
    elsewhere), as a new contiguous tensor. The inverse along the height is an FFT over the kept
    columns only, along the contiguous axis; the one along the width, from the kept columns to the
    ``out_w`` wanted points, is one real matrix product that writes the result in place."""
    band = plan.band
    grid_h = band.grid[0]
    lead = spectrum.shape[:-2]
    columns = spectrum
    if grid_h > 1:
        # The kept rows are one run of frequencies starting at -bottom: their inverse FFT, zero-extended
        # to the grid, is the wanted one times exp(2 pi i bottom h / grid_h), which the copy undoes.
        out = scratch("ifft", (*lead, band.cols, grid_h), spectrum)
        columns = torch.fft.ifft(spectrum, n=grid_h, dim=-1, out=out)
    rows = scratch("rows", (*lead, out_h, band.cols), spectrum)
    by_row = columns[..., :out_h].transpose(-1, -2)
    if band.bottom:
        torch.mul(by_row, plan.row_shift(out_h), out=rows)
    else:
        rows.copy_(by_row)
    out = spectrum.new_empty((*lead, out_h, out_w), dtype=spectrum.real.dtype)
    torch.matmul(torch.view_as_real(rows).view(-1, 2 * band.cols), plan.inverse_cols(out_w), out=out.view(-1, out_w))
    return out


def filter_band(taps: torch.Tensor, plan: CorrelationPlan, out: torch.Tensor | None = None) -> torch.Tensor:
    """Kept coefficients of filters ``(groups, filters, in_per_group, kh, kw)`` zero-padded to the grid,
    bins first: ``(groups, bins, in_per_group, filters)`` (into ``out`` when given)."""
    g, filters, cg, kh, kw = taps.shape
    band = plan.band
    shape = (g, band.kept, cg, filters)
    half = torch.matmul(taps.reshape(-1, kw), plan.to_band_cols)  # DFT along the width
    spectrum = torch.view_as_complex(half.view(g, filters, cg, kh, band.cols, 2))
    spectrum = spectrum.permute(0, 4, 3, 2, 1).reshape(g, band.cols, kh, cg * filters)
    if plan.to_band_rows is None:
        return spectrum.reshape(shape) if out is None else out.copy_(spectrum.reshape(shape))
    rows_out = None if out is None else out.view(g, band.cols, band.rows, cg * filters)
    return torch.matmul(plan.to_band_rows, spectrum, out=rows_out).reshape(shape)  # and along the height


def taps_from_band(spectrum: torch.Tensor, plan: CorrelationPlan) -> torch.Tensor:
    """The taps ``(groups, filters, in_per_group, kh, kw)`` of the inverse FFT of filter bands laid out
    as :func:`filter_band` gives them, ``(groups, bins, in_per_group, filters)``: its adjoint, which
    turns a filter-spectrum gradient into the weight gradient."""
    g, _, cg, filters = spectrum.shape
    (kh, kw), cols = plan.kernel, plan.band.cols
    s = spectrum.reshape(g, cols, plan.band.rows, cg * filters)
    if plan.to_taps_rows is not None:
        s = torch.matmul(plan.to_taps_rows, s)  # (groups, cols, kh, cg * filters)
    s = s.view(g, cols, kh, cg, filters).permute(0, 4, 3, 2, 1).contiguous()
    taps = torch.matmul(torch.view_as_real(s).reshape(-1, 2 * cols), plan.to_taps_cols)
    return taps.reshape(g, filters, cg, kh, kw)


# -- the channel product --------------------------------------------------------------------------


def _native_available() -> bool:
    try:
        _native.core()
    except ImportError:
        return False
    return True


def channel_product(
    a: torch.Tensor,
    b: torch.Tensor,
    conj_b: bool,
    out: torch.Tensor,
    backend: str | None = None,
) -> None:
    """``out[g, m, i, j] = sum_k a[g, m, i, k] * b[g, m, k, j]`` (``b`` conjugated when ``conj_b``):
    one small complex matrix product per bin m.

    ``backend``: ``"native"`` (complex64 CPU tensors, ``b`` contiguous along j; ``a`` and ``out``
    any strides), ``"torch"`` (batched matmul, any device and dtype) or ``"auto"`` (native when it
    applies); None: the one :func:`product_backend` selects (``"auto"`` by default).
    """
    backend = _default_backend if backend is None else backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    native_fits = all(t.device.type == "cpu" and t.dtype == torch.complex64 for t in (a, b, out)) and (
        b.shape[-1] == 1 or b.stride(-1) == 1
    )
    if backend == "auto":
        backend = "native" if native_fits and _native_available() else "torch"
    if backend == "native":
        if not native_fits:
            raise ValueError("the native product needs complex64 CPU tensors, b contiguous along its last axis")
        _native.core().spectral_product(a.numpy(), b.numpy(), conj_b, out.numpy())
        return
    out.copy_(torch.matmul(a, b.conj() if conj_b else b))


@contextmanager
def product_backend(backend: str) -> Iterator[None]:
    """Run every channel product in the block with ``backend`` (for comparing them)."""
    global _default_backend
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    previous, _default_backend = _default_backend, backend
    try:
        yield
    finally:
        _default_backend = previous


# -- the correlation and its gradients -----------------------------------------------------------


def _steps(count: int, bytes_each: int) -> Iterator[range]:
    """Ranges splitting ``count`` items into steps of about CHUNK_BYTES, a multiple of eight items
    where possible (two registers of the native product)."""
    step = min(count, max(8, CHUNK_BYTES // max(1, bytes_each) // 8 * 8))
    for start in range(0, count, step):
        yield range(start, min(count, start + step))


def _bins_first(
    columns: torch.Tensor, band: SpectralBand, groups: int, scratch_tag: str | None = None, transposed: bool = False
) -> torch.Tensor:
    """The band of spectra ``(batch, channels, cols, grid_h)`` (as :func:`band_rfft2` gives them)
    gathered into a contiguous (groups, bins, batch, channels per group), or (groups, bins, channels
    per group, batch) when ``transposed``; new, or in the scratch buffer ``scratch_tag``."""
    batch, channels = columns.shape[:2]
    inner = (channels // groups, batch) if transposed else (batch, channels // groups)
    shape = (groups, band.kept, *inner)
    out = columns.new_empty(shape) if scratch_tag is None else scratch(scratch_tag, shape, columns)
    by_column = out.view(groups, band.cols, band.rows, *inner)
    order = (1, 3, 4, 2, 0) if transposed else (1, 3, 4, 0, 2)
    for kept, rows in _row_runs(band):
        part = columns[..., rows].reshape(batch, groups, channels // groups, band.cols, -1)
        by_column[:, :, kept] = part.permute(order)
    return out


def _bins_first_view(spectra: torch.Tensor, groups: int) -> torch.Tensor:
    """The same indexing as :func:`_bins_first` as a view of a contiguous band (batch, channels, cols, rows)."""
    batch, channels = spectra.shape[:2]
    return spectra.view(batch, groups, channels // groups, -1).permute(1, 3, 0, 2)


def correlate_spectra(x_bins: torch.Tensor, spectrum: torch.Tensor, plan: CorrelationPlan) -> torch.Tensor:
    """Output band (batch, out_channels, cols, rows) = sum over input channels of X * conj(W), from
    the input band (groups, bins, batch, in_per_group) and the filter band (groups, bins,
    in_per_group, out_per_group); in a scratch buffer."""
    batch, out_channels = x_bins.shape[2], spectrum.shape[3] * plan.groups
    y = scratch("product", (batch, out_channels, plan.band.cols, plan.band.rows), x_bins)
    channel_product(x_bins, spectrum, True, _bins_first_view(y, plan.groups))
    return y


def _input_spectrum_grad(d_by_filter: torch.Tensor, spectrum: torch.Tensor, plan: CorrelationPlan) -> torch.Tensor:
    """dX (batch, in_channels, cols, rows) = sum over output channels of D * W, computed transposed
    (dX^T = W D^T at each bin) from the gradient band (groups, bins, out_per_group, batch), so
    that the filter band serves in the layout the forward pass uses."""
    batch, in_channels = d_by_filter.shape[3], spectrum.shape[2] * plan.groups
    dx = scratch("product", (batch, in_channels, plan.band.cols, plan.band.rows), d_by_filter)
    channel_product(spectrum, d_by_filter, False, _bins_first_view(dx, plan.groups).transpose(2, 3))
    return dx


def _weight_grad(
    x_bins: torch.Tensor, d_bins: torch.Tensor, plan: CorrelationPlan, weight_shape: torch.Size, dtype: torch.dtype
) -> torch.Tensor:
    """dW taps (out_channels, in_per_group, kh, kw) from G = sum over the batch of X * conj(D), a few
    filters at a time (G has the size of the filters' band)."""
    out_channels, cg = weight_shape[:2]
    g = plan.groups
    x_by_channel = x_bins.transpose(2, 3)  # (groups, bins, cg, batch)
    grad = torch.empty((g, out_channels // g, cg, *plan.kernel), dtype=dtype, device=x_bins.device)
    for filters in _steps(out_channels // g, g * cg * plan.band.kept * x_bins.element_size()):
        g_spec = scratch("weight-grad", (g, plan.band.kept, cg, len(filters)), x_bins)
        channel_product(x_by_channel, d_bins[..., filters.start : filters.stop], True, g_spec)
        grad[:, filters.start : filters.stop] = taps_from_band(g_spec, plan)
    return grad.reshape(weight_shape)


class BandLimitedCorrelation(torch.autograd.Function):
    """``y = band-limited valid correlation of x with the filters, + bias`` and its exact gradients.

    ``x`` is the input padded as the plan says (see :func:`make_plan`'s ``offset``); ``spectrum``
    is the filters' band (groups, bins, in / groups, out / groups) as :func:`filter_band` gives it
    for ``weight`` (out, in / groups, kh, kw), which may be None when no weight gradient is wanted.
    Saved for the backward pass: the input's band (not the input) and the filters' band, each only
    when a gradient needs it.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, spectrum, plan):
        # The backward pass needs the input's band for the weight gradient only, the filters' band
        # for the input gradient only: each is kept just when wanted.
        wants_input_grad, wants_weight_grad = ctx.needs_input_grad[:2]
        scratch_tag = None if wants_weight_grad else "input-bins"
        x_bins = _bins_first(band_rfft2(x, plan), plan.band, plan.groups, scratch_tag)
        y_spectrum = correlate_spectra(x_bins, spectrum, plan)
        if bias is not None:  # a constant map is its zero-frequency coefficient, times the grid size
            y_spectrum[:, :, 0, plan.band.bottom] += bias * math.prod(plan.band.grid)
        ctx.save_for_backward(x_bins if wants_weight_grad else None, spectrum if wants_input_grad else None)
        ctx.plan, ctx.input_size = plan, tuple(x.shape[-2:])
        ctx.weight_shape = None if weight is None else weight.shape
        return band_irfft2(y_spectrum, plan, *plan.out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_bins, spectrum = ctx.saved_tensors
        plan = ctx.plan
        d_full = band_rfft2(grad_out, plan)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            d_by_filter = _bins_first(d_full, plan.band, plan.groups, "grad-bins", transposed=True)
            grad_x = band_irfft2(_input_spectrum_grad(d_by_filter, spectrum, plan), plan, *ctx.input_size)
        if ctx.needs_input_grad[1]:
            d_bins = _bins_first(d_full, plan.band, plan.groups, "grad-bins")
            grad_w = _weight_grad(x_bins, d_bins, plan, ctx.weight_shape, grad_out.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None
