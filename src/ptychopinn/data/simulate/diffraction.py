"""Patches and far-field diffraction of the simulator.

This is deliberately an implementation independent of :mod:`ptychopinn.physics` (exact
Fourier-shift patch extraction in numpy/scipy, its own far field): the engine's forward
model is tested against data made here, and a shared implementation would test the engine
against itself.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.fft as sfft

from ptychopinn.data.simulate._common import (
    _FFT_WORKERS,
    SeedLike,
)
from ptychopinn.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Patches and far field
# ---------------------------------------------------------------------------------------------


def _shift_filter(frac: np.ndarray, length: int, passband: float) -> np.ndarray:
    """(M, L) frequency responses that shift by ``frac`` px (sample ``j`` <- ``j + frac``).

    The phase ramp is exact on ``|f| <= passband * Nyquist`` and tapers smoothly to 0 at
    Nyquist. The response stays all-pass (|H| = 1) but becomes smooth and periodic, so its
    kernel decays fast and the periodic wrap of the padded window barely reaches the patch:
    band-limited content is shifted to ~1e-4 of its magnitude with ``pad=16`` (an all-pass
    ramp up to Nyquist, ``passband=1``, is exact only for periodic windows: ~1e-2 here).
    """
    f = sfft.fftfreq(length)
    if passband >= 1.0:
        g = f
    else:
        t = np.clip((0.5 - np.abs(f)) / (0.5 - 0.5 * passband), 0.0, 1.0)
        g = f * t**3 * (10.0 - 15.0 * t + 6.0 * t * t)  # quintic smoothstep: short kernel
    return np.exp(2j * np.pi * frac[:, None] * g[None, :])


def extract_patches_exact(
    obj: np.ndarray,
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    N: int,
    *,
    pad: int = 16,
    passband: float = 0.5,
    chunk: int = 256,
) -> np.ndarray:
    """(M, N, N) complex64 patches centred at sub-pixel positions.

    For each position, a window of ``N + 2*pad`` pixels around the nearest integer start is
    cropped (the object is reflect-padded for windows at its border), shifted by the
    fractional part (at most half a pixel) in Fourier space and cropped to ``N``.
    Integer-aligned starts are plain slices. The shift is exact (to ~1e-4) for content
    band-limited to ``passband`` x Nyquist (see :func:`_shift_filter`), which is what
    :func:`make_object` produces with ``band_limit=passband``. Positions whose patch leaves
    the object raise :class:`DataValidationError`.
    """
    obj = np.asarray(obj)
    if obj.ndim != 2:
        raise DataValidationError(f"object: expected a 2-D array, found shape {obj.shape}")
    x = np.atleast_1d(np.asarray(xcoords, dtype=np.float64))
    y = np.atleast_1d(np.asarray(ycoords, dtype=np.float64))
    if x.shape != y.shape or x.ndim != 1:
        raise DataValidationError(
            f"xcoords/ycoords: expected equal 1-D shapes, found {x.shape} and {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataValidationError("xcoords/ycoords: expected finite values, found NaN/Inf")
    n = int(N)
    if n < 1 or pad < 0 or not 0.0 < passband <= 1.0:
        raise ConfigError(
            f"extract_patches_exact: expected N >= 1, pad >= 0 and passband in (0, 1], found "
            f"N={N}, pad={pad}, passband={passband}"
        )
    h, w = obj.shape
    sx, sy = x - (n - 1) / 2, y - (n - 1) / 2
    tol = 1e-6
    if x.size and (
        sx.min() < -tol
        or sy.min() < -tol
        or sx.max() + n - 1 > w - 1 + tol
        or sy.max() + n - 1 > h - 1 + tol
    ):
        raise DataValidationError(
            f"xcoords/ycoords: expected patches of N={n} inside the object {obj.shape}, found "
            f"centres x in [{x.min():.3f}, {x.max():.3f}], y in [{y.min():.3f}, {y.max():.3f}]"
        )
    # Nearest integer start, so the Fourier shift is at most half a pixel (smaller error).
    ix, iy = np.rint(sx).astype(np.int64), np.rint(sy).astype(np.int64)
    fx, fy = sx - ix, sy - iy
    fx[np.abs(fx) < 1e-9] = 0.0
    fy[np.abs(fy) < 1e-9] = 0.0
    out = np.empty((x.size, n, n), dtype=np.complex64)
    integer = (fx == 0) & (fy == 0)
    for k in np.flatnonzero(integer):
        out[k] = obj[iy[k] : iy[k] + n, ix[k] : ix[k] + n]
    frac_idx = np.flatnonzero(~integer)
    if frac_idx.size == 0:
        return out
    pad = int(pad)
    length = n + 2 * pad
    padded = np.pad(obj.astype(np.complex128), pad, mode="reflect")
    offs = np.arange(length)
    filt_x_all = _shift_filter(fx, length, passband)
    filt_y_all = _shift_filter(fy, length, passband)
    for start in range(0, frac_idx.size, chunk):
        idx = frac_idx[start : start + chunk]
        rows = iy[idx][:, None] + offs[None, :]
        cols = ix[idx][:, None] + offs[None, :]
        win = padded[rows[:, :, None], cols[:, None, :]]
        spec = sfft.fft2(win, axes=(-2, -1), workers=_FFT_WORKERS)
        spec *= filt_y_all[idx][:, :, None] * filt_x_all[idx][:, None, :]
        shifted = sfft.ifft2(spec, axes=(-2, -1), workers=_FFT_WORKERS)
        out[idx] = shifted[:, pad : pad + n, pad : pad + n]
    return out


def far_field(exit_waves: np.ndarray) -> np.ndarray:
    """Complex far field over the last two axes, zero frequency at index ``N//2``."""
    axes = (-2, -1)
    return sfft.fftshift(
        sfft.fft2(
            sfft.ifftshift(exit_waves, axes=axes), axes=axes, norm="ortho", workers=_FFT_WORKERS
        ),
        axes=axes,
    )


def far_field_intensity(exit_waves: np.ndarray) -> np.ndarray:
    """Far-field intensity ``|F|^2`` (expected photon counts) of exit waves ``(..., N, N)``.

    Float32 for single-precision input, float64 otherwise; ``sum |F|^2 == sum |psi|^2``.
    """
    psi = np.asarray(exit_waves)
    if psi.ndim < 2:
        raise DataValidationError(f"exit_waves: expected (..., N, N), found shape {psi.shape}")
    f = far_field(psi)
    return np.square(f.real) + np.square(f.imag)


# ---------------------------------------------------------------------------------------------
# Diffraction
# ---------------------------------------------------------------------------------------------


def expected_totals(probe: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """Expected total count of each pattern, ``sum |P * O|^2`` (Parseval: no FFT needed)."""
    power = np.abs(probe.astype(np.complex128)) ** 2
    return np.einsum("mij,ij->m", np.abs(patches.astype(np.complex128)) ** 2, power)


def _probe_photon_scale(
    probe: np.ndarray, patches: np.ndarray, nphotons: float | None
) -> tuple[np.ndarray, float]:
    """Scale ``probe`` so the mean expected total count per pattern equals ``nphotons``.

    By Parseval the total count of a pattern is ``sum |P * O|^2``, so the scale follows from
    real-space sums without FFTs.
    """
    if nphotons is None:
        return probe.astype(np.complex128), 1.0
    if not (np.isfinite(nphotons) and nphotons > 0):
        raise ConfigError(f"nphotons: expected a positive number or None, found {nphotons}")
    mean = float(expected_totals(probe, patches).mean())
    if mean <= 0:
        raise DataValidationError("probe/object: expected a non-zero exit wave, found all zeros")
    factor = math.sqrt(nphotons / mean)
    return probe.astype(np.complex128) * factor, factor


def simulate_diffraction(
    obj: np.ndarray,
    probe: np.ndarray,
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    *,
    nphotons: float | None = 1e6,
    poisson: bool = True,
    seed: SeedLike = None,
    patches: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Far-field photon counts of ``probe * patch`` at every scan position.

    The probe is multiplied by one scalar so that the mean (over patterns) expected total
    count equals ``nphotons`` (``None``: keep the probe as is); then Poisson noise is drawn
    if ``poisson``. ``patches`` (from :func:`extract_patches_exact`) may be passed to avoid
    extracting twice.

    Returns:
        ``counts`` (M, N, N) float32 and the scaled probe (N, N) complex64, such that
        ``far_field_intensity(scaled_probe * patch)`` is the expected count.
    """
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise DataValidationError(f"probe: expected a square (N, N) array, found {probe.shape}")
    n = probe.shape[0]
    if patches is None:
        patches = extract_patches_exact(obj, xcoords, ycoords, n)
    elif patches.shape[1:] != (n, n):
        raise DataValidationError(
            f"patches: expected (M, {n}, {n}) to match the probe, found {patches.shape}"
        )
    scaled, _ = _probe_photon_scale(probe, patches, nphotons)
    scaled64 = scaled.astype(np.complex64)
    # Use the stored (complex64) probe so the returned probe reproduces the counts exactly.
    intensity = far_field_intensity(scaled64.astype(np.complex128) * patches.astype(np.complex128))
    if poisson:
        rng = np.random.default_rng(seed)
        counts = rng.poisson(intensity).astype(np.float32)
    else:
        counts = intensity.astype(np.float32)
    return counts, scaled64
