"""Objects: real patterns (synthetic or scikit-image images) turned into band-limited
complex transmission functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ptychopinn.data.simulate._common import (
    _FFT_WORKERS,
    SeedLike,
    _entropy,
    _normalise01,
    _shape2,
    _smooth_step,
)
from ptychopinn.errors import ConfigError

SYNTHETIC_PATTERNS = ("lines", "grf", "constant", "disks")
SKIMAGE_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)
"""No-argument images of ``skimage.data`` that ship with scikit-image (no download)."""
PATTERN_KINDS = SYNTHETIC_PATTERNS + SKIMAGE_IMAGES
SEEDED_PATTERNS = tuple(kind for kind in SYNTHETIC_PATTERNS if kind != "constant")
"""The kinds the object seed draws; the others (``constant``, the images) ignore it."""


# ---------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------


def _pattern_lines(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    n_lines: int | None = None,
    length_range: tuple[float, float] = (0.05, 0.35),
    blur: float = 1.0,
) -> np.ndarray:
    """Random anti-aliased thin lines, overlaid (max) and slightly blurred."""
    from skimage.draw import line_aa

    h, w = shape
    if n_lines is None:
        n_lines = max(1, round(h * w / 400))
    size = max(h, w)
    img = np.zeros(shape, dtype=np.float64)
    cy = rng.uniform(0, h - 1, n_lines)
    cx = rng.uniform(0, w - 1, n_lines)
    theta = rng.uniform(0, np.pi, n_lines)
    half = 0.5 * size * rng.uniform(length_range[0], length_range[1], n_lines)
    level = rng.uniform(0.5, 1.0, n_lines)
    dy, dx = half * np.sin(theta), half * np.cos(theta)
    for k in range(n_lines):
        rr, cc, val = line_aa(
            round(cy[k] - dy[k]), round(cx[k] - dx[k]), round(cy[k] + dy[k]), round(cx[k] + dx[k])
        )
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        rr, cc = rr[ok], cc[ok]
        img[rr, cc] = np.maximum(img[rr, cc], level[k] * val[ok])
    if blur > 0:
        img = ndimage.gaussian_filter(img, blur, mode="reflect")
    peak = img.max()
    return img / peak if peak > 0 else img


def _pattern_grf(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    correlation_length: float = 8.0,
    spectrum: str = "gaussian",
    exponent: float = 3.0,
) -> np.ndarray:
    """Gaussian random field: white noise filtered in Fourier space.

    ``spectrum="gaussian"`` is white noise convolved with a Gaussian of std
    ``correlation_length`` px; ``"powerlaw"`` uses the amplitude filter
    ``(1 + (2 pi f L)^2)^(-exponent/2)``, i.e. power-law above ``1/L`` (more fine detail).
    """
    if correlation_length <= 0:
        raise ConfigError(
            f"correlation_length: expected a positive length in px, found {correlation_length}"
        )
    h, w = shape
    fy = sfft.fftfreq(h)[:, None]
    fx = sfft.fftfreq(w)[None, :]
    f2 = fy**2 + fx**2
    if spectrum == "gaussian":
        filt = np.exp(-2.0 * np.pi**2 * correlation_length**2 * f2)
    elif spectrum == "powerlaw":
        filt = (1.0 + 4.0 * np.pi**2 * correlation_length**2 * f2) ** (-exponent / 2.0)
    else:
        raise ConfigError(f"spectrum: expected 'gaussian' or 'powerlaw', found {spectrum!r}")
    noise = rng.standard_normal(shape)
    field = sfft.ifft2(sfft.fft2(noise) * filt).real
    return _normalise01(field)


def _pattern_disks(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    n_disks: int | None = None,
    radius_range: tuple[float, float] = (0.02, 0.08),
    blur: float = 1.0,
) -> np.ndarray:
    """Random disks of random level (overlaid with max), slightly blurred."""
    h, w = shape
    if n_disks is None:
        n_disks = max(1, round(h * w / 1500))
    size = min(h, w)
    img = np.zeros(shape, dtype=np.float64)
    cy = rng.uniform(0, h - 1, n_disks)
    cx = rng.uniform(0, w - 1, n_disks)
    rad = np.maximum(1.0, size * rng.uniform(radius_range[0], radius_range[1], n_disks))
    level = rng.uniform(0.3, 1.0, n_disks)
    for k in range(n_disks):
        y0, y1 = max(0, int(cy[k] - rad[k]) - 1), min(h, int(cy[k] + rad[k]) + 2)
        x0, x1 = max(0, int(cx[k] - rad[k]) - 1), min(w, int(cx[k] + rad[k]) + 2)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        inside = (yy - cy[k]) ** 2 + (xx - cx[k]) ** 2 <= rad[k] ** 2
        sub = img[y0:y1, x0:x1]
        sub[inside] = np.maximum(sub[inside], level[k])
    if blur > 0:
        img = ndimage.gaussian_filter(img, blur, mode="reflect")
    peak = img.max()
    return img / peak if peak > 0 else img


def _pattern_constant(
    shape: tuple[int, int], rng: np.random.Generator, *, value: float = 1.0
) -> np.ndarray:
    """A constant image (``value`` in [0, 1])."""
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"value: expected a number in [0, 1], found {value}")
    return np.full(shape, float(value))


def _pattern_skimage(name: str, shape: tuple[int, int]) -> np.ndarray:
    """A ``skimage.data`` image as gray float in [0, 1], resized to ``shape``."""
    import skimage.data
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.transform import resize
    from skimage.util import img_as_float

    try:
        img = getattr(skimage.data, name)()
    except Exception as exc:  # missing optional data files, etc.
        raise ConfigError(
            f"kind: the scikit-image image {name!r} could not be loaded ({exc})"
        ) from exc
    img = img_as_float(np.asarray(img))
    if img.ndim == 3 and img.shape[-1] == 4:
        img = rgba2rgb(img)
    if img.ndim == 3:
        img = rgb2gray(img)
    img = resize(img, shape, anti_aliasing=True, mode="reflect")
    return np.clip(img, 0.0, 1.0)


_SYNTHETIC: dict[str, Callable[..., np.ndarray]] = {
    "lines": _pattern_lines,
    "grf": _pattern_grf,
    "constant": _pattern_constant,
    "disks": _pattern_disks,
}


def make_pattern(
    kind: str, shape: int | tuple[int, int], *, seed: SeedLike = None, **kw: Any
) -> np.ndarray:
    """A real 2-D pattern in [0, 1] (float64) used for object amplitude or phase.

    Args:
        kind: ``"lines"`` (kw ``n_lines``, ``length_range`` as fractions of the size,
            ``blur``), ``"grf"`` (kw ``correlation_length`` px, ``spectrum`` in
            {"gaussian", "powerlaw"}, ``exponent``), ``"constant"`` (kw ``value``),
            ``"disks"`` (kw ``n_disks``, ``radius_range``, ``blur``), or a scikit-image
            image name from :data:`SKIMAGE_IMAGES` (gray, resized to ``shape``).
        shape: ``(H, W)`` or an int for a square.
        seed: anything ``np.random.default_rng`` accepts.
    """
    shp = _shape2(shape)
    rng = np.random.default_rng(seed)
    if kind in _SYNTHETIC:
        try:
            out = _SYNTHETIC[kind](shp, rng, **kw)
        except TypeError as exc:
            raise ConfigError(f"pattern {kind!r}: invalid keyword arguments ({exc})") from exc
    elif kind in SKIMAGE_IMAGES:
        if kw:
            raise ConfigError(f"pattern {kind!r}: takes no keyword arguments, found {sorted(kw)}")
        out = _pattern_skimage(kind, shp)
    else:
        raise ConfigError(f"kind: expected one of {', '.join(PATTERN_KINDS)}, found {kind!r}")
    return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Object
# ---------------------------------------------------------------------------------------------


def _check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a (low, high) pair, found {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise ConfigError(f"{name}: expected finite low <= high, found {(lo, hi)}")
    return lo, hi


def _check_band_limit(band_limit: float | None) -> None:
    if band_limit is not None and not 0.0 < band_limit <= 1.0:
        raise ConfigError(
            f"band_limit: expected None or a fraction of Nyquist in (0, 1], found {band_limit}"
        )


def band_limit_filter(obj: np.ndarray, band_limit: float) -> np.ndarray:
    """Low-pass ``obj`` so that no content is left above ``band_limit`` x Nyquist.

    The kernel is ``|g|^2`` with ``g`` the inverse FFT of a smooth disk of half the
    cut-off radius, so it is non-negative (each output pixel is a weighted *average* of
    input pixels: no ringing, amplitudes never exceed the input maximum and phases stay in
    any input phase sector narrower than pi) and its spectrum (the disk's autocorrelation,
    like an incoherent OTF) is exactly zero beyond the cut-off. The image is reflect-padded
    first so the FFT's periodic wrap does not mix opposite edges.
    """
    _check_band_limit(band_limit)
    obj = np.asarray(obj)
    h, w = obj.shape
    cutoff = 0.5 * band_limit  # cycles / px
    pad_y, pad_x = min(64, h - 1), min(64, w - 1)
    padded = np.pad(obj, ((pad_y, pad_y), (pad_x, pad_x)), mode="reflect")
    fy = sfft.fftfreq(padded.shape[0])[:, None]
    fx = sfft.fftfreq(padded.shape[1])[None, :]
    half = cutoff / 2
    pupil = _smooth_step((half - np.sqrt(fy**2 + fx**2)) / (0.3 * half))
    kernel = np.abs(sfft.ifft2(pupil)) ** 2
    transfer = sfft.fft2(kernel / kernel.sum()).real
    out = sfft.ifft2(sfft.fft2(padded, workers=_FFT_WORKERS) * transfer, workers=_FFT_WORKERS)
    out = out[pad_y : pad_y + h, pad_x : pad_x + w]
    return out if np.iscomplexobj(obj) else out.real


def make_object(
    shape: int | tuple[int, int],
    *,
    amplitude: str = "grf",
    phase: str = "lines",
    amplitude_range: tuple[float, float] = (0.5, 1.0),
    phase_range: tuple[float, float] = (-np.pi / 2, np.pi / 2),
    band_limit: float | None = 0.5,
    seed: SeedLike = None,
    amplitude_kw: dict | None = None,
    phase_kw: dict | None = None,
) -> np.ndarray:
    """A complex64 object ``a * exp(i phi)`` from two independent patterns.

    ``a`` and ``phi`` are patterns (see :func:`make_pattern`) drawn from independent
    sub-seeds and mapped linearly onto ``amplitude_range`` and ``phase_range``. With
    ``band_limit`` (fraction of Nyquist), the complex object is low-passed by a
    non-negative kernel (see :func:`band_limit_filter`; both maps are smoothed the same way
    first and stretched back to their range) so that sub-pixel patch extraction
    (:func:`extract_patches_exact` with ``passband=band_limit``) is exact. Amplitudes stay
    ``<= amplitude_range[1]`` and phases inside ``phase_range`` (if it is at most pi wide),
    but averaging across steep phase edges lowers the amplitude there, possibly below
    ``amplitude_range[0]``: the band-limited image of a phase edge.
    For a pure phase object use ``amplitude="constant"`` (or ``amplitude_range=(1, 1)``).
    """
    shp = _shape2(shape)
    a_lo, a_hi = _check_range(amplitude_range, "amplitude_range")
    p_lo, p_hi = _check_range(phase_range, "phase_range")
    if a_lo < 0:
        raise ConfigError(f"amplitude_range: expected non-negative values, found {(a_lo, a_hi)}")
    _check_band_limit(band_limit)
    seq_a, seq_p = np.random.SeedSequence(_entropy(seed)).spawn(2)
    a = make_pattern(amplitude, shp, seed=seq_a, **(amplitude_kw or {}))
    phi = make_pattern(phase, shp, seed=seq_p, **(phase_kw or {}))
    if band_limit is not None and band_limit < 1.0:
        a, phi = _prefilter(a, band_limit), _prefilter(phi, band_limit)
    obj = (a_lo + (a_hi - a_lo) * a) * np.exp(1j * (p_lo + (p_hi - p_lo) * phi))
    if band_limit is not None and band_limit < 1.0:
        obj = band_limit_filter(obj, band_limit)
    return obj.astype(np.complex64)


def _prefilter(pattern: np.ndarray, band_limit: float) -> np.ndarray:
    """Band-limit a real pattern and stretch it back to its own [min, max].

    Smoothing the maps *before* ``exp(i phi)`` keeps phase gradients within the band, so
    the final complex low-pass removes far less (smaller amplitude dips at phase edges).
    """
    lo, hi = float(pattern.min()), float(pattern.max())
    if hi <= lo:
        return pattern
    return lo + (hi - lo) * _normalise01(band_limit_filter(pattern, band_limit))
