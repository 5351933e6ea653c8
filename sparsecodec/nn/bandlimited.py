"""Band-limited FFT convolution layers (Dziedzic et al., ICML 2019): ``BandLimitedConv1d`` and
``BandLimitedConv2d``, drop-in for ``nn.Conv1d`` / ``nn.Conv2d``.

The convolution is computed in the frequency domain on an FFT grid about the size of the padded
input, and only a low-frequency block of the spectrum (:mod:`sparsecodec.spectral`) takes part: the
input's, the filters' and, in the backward pass, the output gradient's. ``compress_rate`` is the
share of spectral coefficients discarded; at 0 the layer is an ordinary convolution (up to float
rounding), above 0 it equals an ordinary circular convolution on the grid followed by the same
spectral low-pass, cropped. Work and saved activations shrink with the band.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.utils import _pair, _single

from ..spectral import GRIDS, SpectralBand, band_limit, check_compress_rate, fft_grid
from .spectral_conv import (
    COMPLEX_OF,
    BandLimitedCorrelation,
    CorrelationPlan,
    band_mask,
    filter_band,
    make_plan,
)

ALGORITHMS = ("fft", "auto")

# The speed mode's cost model, in seconds on one core of a 2-core AVX2 machine (measured with
# bench/bandlimited_conv.py's shapes); only the ratios matter. Fixed costs are the torch calls of
# each path, which dominate small problems.
DIRECT_MACS_PER_S = 4.3e10  # oneDNN direct convolution
PRODUCT_CMACS_PER_S = 3.6e9  # native spectral product, complex multiply-adds
FFT_POINT_LOGS_PER_S = 3.0e9  # torch.fft, grid points x log2(grid points)
FIXED_S = {"fft": 4e-4, "direct, band-limited": 2e-4, "direct": 2e-5}

_PLANS_KEPT = 4


class _BandLimitedConvNd(_ConvNd):
    """Shared machinery; a 1-D layer runs as a 2-D one on a one-row map."""

    _ndim: int
    _torch_conv: type[nn.Module]
    _tuple: Callable[[Any], tuple[int, ...]]  # an int or tuple argument as an _ndim-tuple

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: str | int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: torch.dtype | None = None,
        *,
        compress_rate: float = 0.0,
        fft_grid: str = "compact",
        algorithm: str = "fft",
    ) -> None:
        n = self._tuple
        super().__init__(
            in_channels, out_channels, n(kernel_size), n(stride), padding if isinstance(padding, str) else n(padding),
            n(dilation), False, n(0), groups, bias, padding_mode, device=device, dtype=dtype,
        )  # fmt: skip
        if self.weight.dtype not in COMPLEX_OF:
            raise TypeError(f"{type(self).__name__} supports float32 and float64 (torch.fft), got {self.weight.dtype}")
        if fft_grid not in GRIDS:
            raise ValueError(f"fft_grid must be one of {GRIDS}, got {fft_grid!r}")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        self._compress_rate = check_compress_rate(compress_rate)
        self.fft_grid, self.algorithm = fft_grid, algorithm
        self._plans: OrderedDict[tuple, CorrelationPlan] = OrderedDict()
        self._cached_spectrum: tuple | None = None

    # -- configuration ------------------------------------------------------------------------

    @property
    def compress_rate(self) -> float:
        """Nominal share of spectral coefficients discarded (see :meth:`band` for the measured one)."""
        return self._compress_rate

    @compress_rate.setter
    def compress_rate(self, value: float) -> None:
        if self.is_spectral:
            raise RuntimeError("the band of a layer holding only its filter spectrum is fixed")
        self._compress_rate = check_compress_rate(value)

    @property
    def is_spectral(self) -> bool:
        """True after :meth:`freeze_spectrum`: the layer holds kept filter coefficients, not a weight."""
        return "weight_spectrum" in self._buffers

    def _geometry(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """Kernel, dilation and stride of the 2-D problem the layer runs."""
        if self._ndim == 1:
            return (1, self.kernel_size[0]), (1, self.dilation[0]), (1, self.stride[0])
        return tuple(self.kernel_size), tuple(self.dilation), tuple(self.stride)  # type: ignore[return-value]

    def _padded_size(self, size: tuple[int, ...]) -> tuple[int, int]:
        pads = self._reversed_padding_repeated_twice  # (last axis first, before / after)
        padded = [n + pads[2 * (len(size) - 1 - i)] + pads[2 * (len(size) - 1 - i) + 1] for i, n in enumerate(size)]
        return (1, padded[0]) if self._ndim == 1 else (padded[0], padded[1])

    def _input_size(self, input_size: Any) -> tuple[int, ...]:
        size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        if len(size) != self._ndim or not all(isinstance(n, int) and n > 0 for n in size):
            raise ValueError(f"input_size must be {self._ndim} positive int(s), got {input_size!r}")
        return size

    def band(self, input_size: int | tuple[int, ...]) -> SpectralBand:
        """The kept block of the spectrum for inputs of this spatial size (its ``compress_rate`` is
        the measured share discarded)."""
        return self._band_for_padded(self._padded_size(self._input_size(input_size)))

    def _band_for_padded(self, padded: tuple[int, int]) -> SpectralBand:
        (kh, kw), (dh, dw), _ = self._geometry()
        extent = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        if padded[0] < extent[0] or padded[1] < extent[1]:
            raise ValueError(f"input (after padding) {padded[2 - self._ndim :]} is smaller than the kernel")
        grid_h = 1 if self._ndim == 1 else fft_grid(padded[0], extent[0], self.fft_grid)
        return band_limit((grid_h, fft_grid(padded[1], extent[1], self.fft_grid)), self._compress_rate, self._ndim)

    def _offset(self) -> tuple[int, int]:
        """Zero padding in front of the input that the correlation takes care of (see make_plan)."""
        if self.padding_mode != "zeros":
            return (0, 0)
        pads = self._reversed_padding_repeated_twice  # (left, right[, top, bottom])
        return (0, pads[0]) if self._ndim == 1 else (pads[2], pads[0])

    def _plan(self, padded: tuple[int, int], dtype: torch.dtype, device: torch.device) -> CorrelationPlan:
        key = (padded, self._compress_rate, self.fft_grid, dtype, device)
        plan = self._plans.get(key)
        if plan is None:
            kernel, dilation, _ = self._geometry()
            band = self._band_for_padded(padded)
            plan = make_plan(band, padded, kernel, dilation, self.groups, dtype, device, self._offset())
            self._plans[key] = plan
            if len(self._plans) > _PLANS_KEPT:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    # -- forward ------------------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a tensor, got {type(x).__name__}")
        batched = self._ndim + 2
        if x.dim() not in (batched, batched - 1):
            names = "(N, C, L) or (C, L)" if self._ndim == 1 else "(N, C, H, W) or (C, H, W)"
            raise ValueError(f"{type(self).__name__} expects {names} input, got shape {tuple(x.shape)}")
        unbatched = x.dim() == batched - 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        dtype = self.weight_spectrum.dtype if self.is_spectral else self.weight.dtype
        if x.dtype != dtype:
            raise TypeError(f"input dtype {x.dtype} does not match the layer's {dtype}")
        return x, unbatched

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pads = self._reversed_padding_repeated_twice
        if not any(pads):
            return x
        return F.pad(x, pads, mode="constant" if self.padding_mode == "zeros" else self.padding_mode)

    def _filter_spectrum(self, plan: CorrelationPlan, size: tuple[int, ...]) -> torch.Tensor:
        """The filters' kept coefficients laid out for the product (groups, bins, in / groups,
        out / groups). Kept for the backward pass and the next calls, and rebuilt (in place) whenever
        the weight (or stored spectrum) is replaced or modified in place, or the input size changes."""
        g, cg, fg = self.groups, self.in_channels // self.groups, self.out_channels // self.groups
        if self.is_spectral:
            frozen = tuple(int(n) for n in self.spectrum_input_size.tolist())
            if size != frozen:
                raise ValueError(f"this layer holds filter spectra for inputs of size {frozen}, got {size}")
        source = self.weight_spectrum if self.is_spectral else self.weight
        # A tensor made under inference mode has no version counter: its cache entry keeps a copy
        # of it instead, compared on every call (a read of the filters, far cheaper than their FFT).
        inference = source.is_inference()
        key = (-1 if inference else source._version, source.data_ptr(), plan)
        cached = self._cached_spectrum
        if cached is not None and cached[0] is source and cached[1] == key:
            if not inference or torch.equal(cached[3], source):
                return cached[2]
        with torch.no_grad():
            if self.is_spectral:
                natural = torch.view_as_complex(source).reshape(g, fg, cg, plan.band.rows, plan.band.cols)
                spectrum = natural.permute(0, 4, 3, 2, 1).reshape(g, plan.band.kept, cg, fg)
            else:
                # Rebuilt into the old buffer when it fits, which saves page faults; a graph still
                # holding it then fails loudly in its backward pass (autograd's version check).
                shape, old = (g, plan.band.kept, cg, fg), None if cached is None else cached[2]
                fits = old is not None and old.shape == shape and old.dtype == COMPLEX_OF[source.dtype]
                kh, kw = plan.kernel
                taps = source.detach().reshape(g, fg, cg, kh, kw)
                spectrum = filter_band(taps, plan, out=old if fits and old.device == source.device else None)
        self._cached_spectrum = (source, key, spectrum, source.detach().clone() if inference else None)
        return spectrum

    def clear_spectrum_cache(self) -> None:
        """Drop the kept filter spectra (they are rebuilt on the next call)."""
        self._cached_spectrum = None

    def __getstate__(self) -> dict[str, Any]:
        # Pickling (torch.save of the whole module, deepcopy) leaves out what is rebuilt on demand.
        state = super().__getstate__()
        state["_cached_spectrum"], state["_plans"] = None, OrderedDict()
        return state

    def _direct_is_faster(self, plan: CorrelationPlan, batch: int) -> bool:
        """The speed mode's choice: a rough cost model, never a change of result (see ``algorithm``)."""
        if self.algorithm != "auto" or self.is_spectral:
            return False
        band, (kh, kw), (grid_h, grid_w) = plan.band, plan.kernel, plan.band.grid
        _, _, (sh, sw) = self._geometry()
        c, f, cg = self.in_channels, self.out_channels, self.in_channels // self.groups
        grid_log = grid_h * grid_w * math.log2(max(2, grid_h * grid_w))
        if band.keeps_all:
            outputs = -(-plan.out[0] // sh) * -(-plan.out[1] // sw)
            direct = FIXED_S["direct"] + batch * cg * f * kh * kw * outputs / DIRECT_MACS_PER_S
        else:  # circular convolution over the whole grid, then the band's low-pass of the output
            direct = FIXED_S["direct, band-limited"] + batch * cg * f * kh * kw * grid_h * grid_w / DIRECT_MACS_PER_S
            direct += 2 * batch * f * grid_log / FFT_POINT_LOGS_PER_S
        spectral = FIXED_S["fft"] + (batch * c + batch * f) * grid_log / FFT_POINT_LOGS_PER_S
        spectral += batch * cg * f * band.kept / PRODUCT_CMACS_PER_S
        return direct < spectral

    def _direct(self, x_pad: torch.Tensor, plan: CorrelationPlan) -> torch.Tensor:
        """The same band-limited correlation by direct convolution (strided when the band keeps all)."""
        _, dilation, stride = self._geometry()
        weight = self.weight.unsqueeze(-2) if self._ndim == 1 else self.weight
        if plan.band.keeps_all:
            return F.conv2d(x_pad, weight, stride=stride, dilation=dilation, groups=self.groups)
        (grid_h, grid_w), (kh, kw) = plan.band.grid, plan.kernel
        on_grid = F.pad(x_pad, (0, grid_w - x_pad.shape[-1], 0, grid_h - x_pad.shape[-2]))
        reach = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
        wrapped = F.pad(on_grid, (0, reach[1], 0, reach[0]), mode="circular")  # circular correlation
        full = F.conv2d(wrapped, weight, dilation=dilation, groups=self.groups)
        low_pass = torch.fft.rfft2(full) * band_mask(plan.band, full.dtype, full.device)
        y = torch.fft.irfft2(low_pass, s=plan.band.grid)[..., : plan.out[0], : plan.out[1]]
        return y[..., :: stride[0], :: stride[1]]

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x, unbatched = self._check_input(input)
        padded = self._padded_size(tuple(x.shape[2:]))
        plan = self._plan(padded, x.dtype, x.device)
        if self._direct_is_faster(plan, x.shape[0]):
            x_pad = self._pad(x)
            y = self._direct(x_pad.unsqueeze(-2) if self._ndim == 1 else x_pad, plan)
            if self.bias is not None:
                y = y + self.bias.reshape(-1, 1, 1)
        else:
            # Zero padding is folded into the plan (its offset); other modes are padded here.
            x_in = x if self.padding_mode == "zeros" else self._pad(x)
            if self._ndim == 1:
                x_in = x_in.unsqueeze(-2)
            spectrum = self._filter_spectrum(plan, tuple(x.shape[2:]))
            weight = None if self.is_spectral else self.weight.unsqueeze(-2) if self._ndim == 1 else self.weight
            y = BandLimitedCorrelation.apply(x_in, weight, self.bias, spectrum, plan)
            _, _, (sh, sw) = self._geometry()
            if (sh, sw) != (1, 1):
                y = y[..., ::sh, ::sw].contiguous()
        if self._ndim == 1:
            y = y.squeeze(-2)
        return y.squeeze(0) if unbatched else y

    # -- compressed (spectral) form --------------------------------------------------------------

    def freeze_spectrum(self, input_size: int | tuple[int, ...]) -> None:
        """Replace the weight by its kept filter coefficients for inputs of ``input_size``.

        Afterwards ``state_dict()`` holds ``weight_spectrum`` (out, in / groups, rows, cols, 2: real
        and imaginary parts of the kept coefficients only), ``spectrum_input_size`` and ``bias``,
        and the layer accepts only inputs of that size. It still passes gradients to its input and
        bias, but its filters can no longer be trained, and the spatial weight is gone (the band
        is a lossy projection of it). To load such a state dict, build the layer, call
        ``freeze_spectrum`` with any size, then ``load_state_dict`` (the size comes with the dict).
        For kernels much smaller than the map, the band holds more numbers than the taps: this form
        saves the per-call filter transforms, not storage.
        """
        if self.is_spectral:
            raise RuntimeError("the layer already holds only its filter spectrum")
        size = self._input_size(input_size)
        w = self.weight
        plan = self._plan(self._padded_size(size), w.dtype, w.device)
        g, (kh, kw) = self.groups, plan.kernel
        with torch.no_grad():
            spectrum = filter_band(w.reshape(g, self.out_channels // g, -1, kh, kw), plan)  # (g, bins, cg, fg)
            by_column = spectrum.reshape(g, plan.band.cols, plan.band.rows, -1, self.out_channels // g)
            natural = by_column.permute(0, 4, 3, 2, 1).reshape(self.out_channels, -1, plan.band.rows, plan.band.cols)
        self.register_parameter("weight", None)
        self.register_buffer("weight_spectrum", torch.view_as_real(natural).contiguous())
        self.register_buffer("spectrum_input_size", torch.tensor(size, dtype=torch.int64, device=w.device))
        self._cached_spectrum = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors):
        key, size_key = prefix + "weight_spectrum", prefix + "spectrum_input_size"
        if self.is_spectral and isinstance(state_dict.get(size_key), torch.Tensor) and key in state_dict:
            # The spectrum's shape follows the input size it was frozen for: take both from the dict.
            try:
                size = self._input_size([int(n) for n in state_dict[size_key].reshape(-1).tolist()])
                band = self.band(size)
            except ValueError as exc:
                errors.append(f"{size_key}: {exc}")
                return
            want = (self.out_channels, self.in_channels // self.groups, band.rows, band.cols, 2)
            incoming = state_dict[key]
            if tuple(incoming.shape) != want:
                errors.append(
                    f"{key}: shape {tuple(incoming.shape)} does not match {want}, the band for inputs of {size}"
                )
                return
            self.weight_spectrum = torch.empty(
                want, dtype=self.weight_spectrum.dtype, device=self.weight_spectrum.device
            )
            self.spectrum_input_size = torch.tensor(size, dtype=torch.int64, device=self.spectrum_input_size.device)
            self._cached_spectrum = None
        elif not self.is_spectral and key in state_dict:
            errors.append(f"{key}: the state dict holds filter spectra; call freeze_spectrum() before loading it")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors)

    def extra_repr(self) -> str:
        extra = f", compress_rate={self._compress_rate}"
        if self.fft_grid != "compact":
            extra += f", fft_grid={self.fft_grid!r}"
        if self.algorithm != "fft":
            extra += f", algorithm={self.algorithm!r}"
        if self.is_spectral:
            extra += f", spectral_input_size={tuple(self.spectrum_input_size.tolist())}"
        return super().extra_repr() + extra

    @classmethod
    def from_conv(cls, conv: nn.Module, compress_rate: float, *, fft_grid: str = "compact", algorithm: str = "fft"):
        """A band-limited copy of ``conv`` (same arguments, weight and bias)."""
        if not isinstance(conv, cls._torch_conv):
            raise TypeError(
                f"{cls.__name__}.from_conv expects an {cls._torch_conv.__name__}, got {type(conv).__name__}"
            )
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype, compress_rate=compress_rate, fft_grid=fft_grid,
            algorithm=algorithm,
        )  # fmt: skip
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer.train(conv.training)


_COMMON_DOC = """
    Takes every argument of ``nn.{torch_name}`` with the same meaning (stride, padding including
    ``'same'`` / ``'valid'``, padding_mode, dilation, groups, bias, device, dtype; float32 or float64),
    plus, keyword-only:

    * ``compress_rate``: share of the spectral coefficients discarded, in [0, 1) (Dziedzic et al.'s
      rule, see :mod:`sparsecodec.spectral`); 0 is an ordinary convolution.
    * ``fft_grid``: ``"compact"`` (default: the padded input rounded up to a fast FFT length) or
      ``"paper"`` (the authors' larger power-of-two grid). The band-limited result depends on it.
    * ``algorithm``: ``"fft"`` (default) always runs the spectral path; ``"auto"`` is the opt-in
      speed mode, which runs direct convolution (followed, when the band drops coefficients, by the
      same spectral low-pass) where a cost model says the FFT cannot win, e.g. 3x3 kernels on small
      maps. Both compute the same band-limited convolution, so results agree to float rounding.

    Gradients flow to the input, weight and bias through the same band. The filters' kept
    coefficients are computed once per weight version and input size and kept, for the backward
    pass and for later calls (inference reuses them until the weight changes). They take as much
    memory as ``out x in / groups`` complex maps of the kept band (tens of MB for a large layer);
    ``clear_spectrum_cache()`` frees them. Only the input's band is saved for the backward pass.
    Saving: ``state_dict()`` holds the ordinary ``weight`` and ``bias`` (so it loads into
    ``nn.{torch_name}`` too); :meth:`freeze_spectrum` turns the layer into a form that holds and saves
    only the kept filter coefficients, for one input size.
"""


class BandLimitedConv1d(_BandLimitedConvNd):
    _ndim = 1
    _torch_conv = nn.Conv1d
    _tuple = staticmethod(_single)


class BandLimitedConv2d(_BandLimitedConvNd):
    _ndim = 2
    _torch_conv = nn.Conv2d
    _tuple = staticmethod(_pair)


BandLimitedConv1d.__doc__ = "Band-limited FFT ``nn.Conv1d``.\n" + _COMMON_DOC.format(torch_name="Conv1d")
BandLimitedConv2d.__doc__ = "Band-limited FFT ``nn.Conv2d``.\n" + _COMMON_DOC.format(torch_name="Conv2d")
