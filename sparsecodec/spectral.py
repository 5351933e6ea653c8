"""Which spectral coefficients a band-limited convolution keeps (Dziedzic et al., ICML 2019).

A band-limited convolution is computed on an FFT grid of ``(grid_h, grid_w)`` points. Its one-sided
(``rfft2``) spectrum has ``grid_h x (grid_w // 2 + 1)`` complex coefficients, with the low frequencies
in the top-left and bottom-left corners. The band keeps a low-frequency block of it: the first
``top`` and the last ``bottom`` rows (frequencies ``0 .. top - 1`` and ``-bottom .. -1``) and the
first ``cols`` columns. That block is symmetric under ``k -> -k``, so everything it keeps is the
spectrum of a real signal.

The compression rate c is the share of the one-sided coefficients discarded, with the authors'
index rules:

* 2-D: per axis, with ``half = n // 2 + 1`` one-sided bins of an axis of n points, the highest kept
  frequency is ``floor(half * sqrt(1 - c)) - 1``; the kept block is then the square (in the full
  spectrum) of those frequencies, and keeps about ``1 - c`` of the coefficients.
* 1-D: ``floor(half * c) + 1`` of the highest one-sided bins are discarded whenever ``c > 0``.

At c = 0 everything is kept. Integer rounding makes the measured rate
(:attr:`SpectralBand.compress_rate`) differ a little from the nominal one, more so on small grids.

This module is plain Python (no torch), so it can describe a layer's band without running it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

__all__ = ["SpectralBand", "band_limit", "check_compress_rate", "fft_grid", "smooth_length"]

GRIDS = ("compact", "paper")


def check_compress_rate(compress_rate: object) -> float:
    """``compress_rate`` as a float, or a TypeError / ValueError saying what is wrong with it."""
    if isinstance(compress_rate, bool) or not isinstance(compress_rate, Real):
        raise TypeError(f"compress_rate must be a real number in [0, 1), got {type(compress_rate).__name__}")
    rate = float(compress_rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(
            f"compress_rate is the share of spectral coefficients discarded and must be in [0, 1), got {rate}"
        )
    return rate


def smooth_length(n: int) -> int:
    """The smallest length >= n whose prime factors are all 2, 3, 5 or 7 (fast FFT sizes)."""
    if n < 1:
        raise ValueError(f"length must be positive, got {n}")
    m = n
    while True:
        rest = m
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


def fft_grid(padded: int, kernel_extent: int, grid: str = "compact") -> int:
    """FFT length along one axis for a padded input of ``padded`` points and a (dilated) kernel
    spanning ``kernel_extent`` points.

    ``"compact"``: the padded input rounded up to a fast FFT size. It is the smallest grid on which
    the valid correlation and both gradients are exact, so at c = 0 the layer is an ordinary
    convolution. ``"paper"``: the authors' grid ``padded + max(out, kernel) - 1`` rounded up to a
    power of two, for reproducing their numbers (about four times the work in 2-D).
    """
    if grid == "compact":
        return smooth_length(padded)
    if grid == "paper":
        out = padded - kernel_extent + 1
        return 1 << (padded + max(out, kernel_extent) - 2).bit_length()
    raise ValueError(f"fft_grid must be one of {GRIDS}, got {grid!r}")


@dataclass(frozen=True)
class SpectralBand:
    """The kept block of a one-sided spectrum on a ``grid`` = (grid_h, grid_w) FFT grid."""

    grid: tuple[int, int]
    top: int  # rows 0 .. top - 1
    bottom: int  # rows grid_h - bottom .. grid_h - 1
    cols: int  # columns 0 .. cols - 1

    @property
    def rows(self) -> int:
        return self.top + self.bottom

    @property
    def kept(self) -> int:
        """Coefficients kept (complex values of the one-sided spectrum)."""
        return self.rows * self.cols

    @property
    def total(self) -> int:
        """Coefficients of the one-sided spectrum."""
        return self.grid[0] * (self.grid[1] // 2 + 1)

    @property
    def compress_rate(self) -> float:
        """The measured share of coefficients discarded."""
        return 1.0 - self.kept / self.total

    @property
    def keeps_all(self) -> bool:
        return self.kept == self.total

    def row_frequencies(self) -> list[int]:
        """Row index in the full spectrum of each kept row, in storage order: the negative
        frequencies first (rows ``grid_h - bottom .. grid_h - 1``), then ``0 .. top - 1``, so that
        the kept rows are one run of consecutive frequencies."""
        return list(range(self.grid[0] - self.bottom, self.grid[0])) + list(range(self.top))


def _highest_kept_2d(length: int, rate: float) -> int:
    half = length // 2 + 1
    return max(0, math.floor(half * math.sqrt(1.0 - rate)) - 1)


def band_limit(grid: tuple[int, int], compress_rate: float, ndim: int = 2) -> SpectralBand:
    """The band of a ``ndim``-D convolution (1 or 2) at ``compress_rate`` on ``grid``; a 1-D
    convolution runs on a (1, n) grid."""
    rate = check_compress_rate(compress_rate)
    grid_h, grid_w = grid
    half_w = grid_w // 2 + 1
    if ndim == 1:
        if grid_h != 1:
            raise ValueError(f"a 1-D band needs a (1, n) grid, got {grid}")
        cols = half_w if rate == 0.0 else max(1, half_w - math.floor(half_w * rate) - 1)
        return SpectralBand(grid, 1, 0, cols)
    if ndim != 2:
        raise ValueError(f"ndim must be 1 or 2, got {ndim}")
    n_rows = _highest_kept_2d(grid_h, rate)
    top, bottom = (grid_h, 0) if 2 * n_rows + 1 >= grid_h else (n_rows + 1, n_rows)
    return SpectralBand(grid, top, bottom, min(half_w, _highest_kept_2d(grid_w, rate) + 1))
