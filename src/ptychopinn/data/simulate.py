"""Synthetic ptychography data: objects, probes, scans and far-field diffraction.

Everything here is pure numpy/scipy/scikit-image and seeded through
``np.random.default_rng`` (no global RNG), so a seed reproduces a dataset bit for bit.

Conventions (shared with the rest of the package):

* object pixel coordinates, pixel centres at integers, ``x`` = column, ``y`` = row; a patch
  centred at ``c`` covers ``c - (N-1)/2 + [0..N-1]``;
* far field ``F = fftshift(fft2(ifftshift(psi), norm="ortho"))``, intensity ``|F|^2`` = counts.

The simulated data are physically consistent: ``far_field_intensity(scaled_probe * patch)``
is exactly the expected photon count that the Poisson noise was drawn from, and the labels
are the same patches the diffraction was computed from.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)

__all__ = [
    "PATTERN_KINDS",
    "PROBE_KINDS",
    "SCAN_KINDS",
    "SKIMAGE_IMAGES",
    "SimulationConfig",
    "band_limit_filter",
    "extract_patches_exact",
    "far_field",
    "far_field_intensity",
    "make_object",
    "make_pattern",
    "make_probe",
    "make_scan",
    "simulate_dataset",
    "simulate_diffraction",
]

SeedLike = int | np.random.SeedSequence | np.random.Generator | None

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
PROBE_KINDS = ("lens", "zoneplate", "disk", "gaussian")
#: Zone-plate probe: central stop radius as a fraction of the pupil radius (typical optics 0.3-0.5).
ZONE_PLATE_STOP = 0.45
#: Largest simulated object (pixels): 8192**2 complex128 work arrays are already 1 GiB.
MAX_OBJECT_PIXELS = 8192 * 8192
SCAN_KINDS = ("raster", "spiral", "random")
JITTER_KINDS = ("gaussian", "uniform")

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
_FFT_WORKERS = -1


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _shape2(shape: int | Sequence[int], name: str = "shape") -> tuple[int, int]:
    """Normalise ``shape`` to a positive ``(H, W)`` tuple."""
    if isinstance(shape, int | np.integer):
        shape = (int(shape), int(shape))
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected an int or (height, width), found {shape!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"{name}: expected positive sizes, found {(h, w)}")
    return h, w


def _normalise01(img: np.ndarray) -> np.ndarray:
    """Min-max stretch to [0, 1] (an all-equal image becomes zeros)."""
    lo, hi = float(img.min()), float(img.max())
    if hi - lo <= 0:
        return np.zeros_like(img, dtype=np.float64)
    return (img - lo) / (hi - lo)


def _smooth_step(t: np.ndarray) -> np.ndarray:
    """C-infinity step: 0 for t <= 0, 1 for t >= 1.

    Used for filters whose Fourier pairs must decay fast (no ringing tails).
    """
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", over="ignore"):
        a = np.where(t > 0, np.exp(-1.0 / np.where(t > 0, t, 1.0)), 0.0)
        b = np.where(t < 1, np.exp(-1.0 / np.where(t < 1, 1.0 - t, 1.0)), 0.0)
    return a / (a + b)


def _radius_grid(n: int, centre: float | None = None) -> np.ndarray:
    """Distance (px) of each pixel of an ``n x n`` grid from ``centre`` (default (n-1)/2)."""
    c = (n - 1) / 2 if centre is None else centre
    y, x = np.ogrid[:n, :n]
    return np.hypot(y - c, x - c)


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


def _entropy(seed: SeedLike) -> int | None | np.random.SeedSequence:
    """Turn any seed into something ``SeedSequence`` accepts (Generators give fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, np.random.SeedSequence):
        return seed.generate_state(4)  # type: ignore[return-value]
    return seed


# ---------------------------------------------------------------------------------------------
# Probe
# ---------------------------------------------------------------------------------------------


def _lens_probe(
    n: int,
    diameter: float,
    defocus: float | None,
    pupil_fraction: float,
    edge_width: float | None,
    central_stop: float = 0.0,
) -> np.ndarray:
    """Defocused lens: circular pupil with quadratic (Fresnel) phase, back-propagated.

    A pupil of radius ``R`` frequency pixels with edge phase ``D`` radians focuses a
    geometric-optics spot of diameter ``2 n D / (pi R)`` px; ``defocus`` defaults to the
    value giving ``diameter``. ``central_stop`` > 0 blocks the pupil's centre (radius
    ``central_stop * R``), as the central stop of a Fresnel zone plate does: the probe
    becomes an annular, fringed spot whose far field is a bright ring.
    """
    if not 0.0 < pupil_fraction <= 1.0:
        raise ConfigError(f"pupil_fraction: expected a value in (0, 1], found {pupil_fraction}")
    radius = pupil_fraction * n / 2
    if edge_width is None:
        edge_width = 0.375 * radius  # apodised pupil: short Fresnel tails in real space
    if defocus is None:
        defocus = np.pi * radius * diameter / (2 * n)
    k = np.arange(n) - n // 2
    rho = np.hypot(k[:, None], k[None, :])
    pupil = _smooth_step((radius - rho) / max(edge_width, 1e-6) + 0.5)
    if central_stop > 0:
        stop = central_stop * radius
        pupil = pupil * _smooth_step((rho - stop) / max(edge_width, 1e-6) + 0.5)
    pupil = pupil * np.exp(1j * defocus * (rho / radius) ** 2)
    # Half-pixel phase ramp so the probe centre is (n-1)/2, the patch centre of the contract.
    shift = (n - 1) / 2 - n // 2
    ramp = np.exp(2j * np.pi * (k[:, None] + k[None, :]) * (-shift) / n)
    return sfft.fftshift(sfft.ifft2(sfft.ifftshift(pupil * ramp), norm="ortho"))


def make_probe(
    N: int,
    *,
    kind: str = "lens",
    diameter: float | None = None,
    defocus: float | None = None,
    curvature: float = 0.0,
    pupil_fraction: float = 0.5,
    edge_width: float | None = None,
    aberration: float = 0.0,
) -> np.ndarray:
    """An ``N x N`` complex64 probe centred at ``(N-1)/2``, normalised to ``max|P| == 1``.

    Args:
        kind: ``"lens"`` (defocused circular pupil: ring-ish probe with a bright disk in
            the far field), ``"zoneplate"`` (the same pupil with a central stop of
            :data:`ZONE_PLATE_STOP` of its radius: a structured, fringed probe with a ring
            in the far field), ``"disk"`` (soft-edged disk), ``"gaussian"``.
        diameter: px; geometric spot diameter (lens), disk diameter, or amplitude FWHM
            (gaussian). Default ``N / 3``.
        defocus: lens/zoneplate: pupil phase at the pupil edge (radians); default derived from
            ``diameter`` (when given, it sets the spot size and ``diameter`` is not used).
        curvature: disk/gaussian: quadratic phase (radians) at radius ``diameter / 2``.
        pupil_fraction: lens/zoneplate: pupil radius as a fraction of the Nyquist radius ``N/2``.
        edge_width: width of the soft edge: frequency px of the pupil for lens (default
            0.375 x pupil radius), real-space px for disk (default 2).
    """
    if not isinstance(N, int | np.integer) or N < 4:
        raise ConfigError(f"N: expected an integer >= 4, found {N!r}")
    n = int(N)
    d = n / 3 if diameter is None else float(diameter)
    if not 0 < d <= n:
        raise ConfigError(f"diameter: expected a value in (0, N={n}] px, found {diameter}")
    if kind in ("lens", "zoneplate"):
        stop = ZONE_PLATE_STOP if kind == "zoneplate" else 0.0
        probe = _lens_probe(n, d, defocus, pupil_fraction, edge_width, central_stop=stop)
    elif kind in ("disk", "gaussian"):
        r = _radius_grid(n)
        if kind == "disk":
            ew = 2.0 if edge_width is None else edge_width
            amp = _smooth_step((d / 2 - r) / max(ew, 1e-6) + 0.5)
        else:
            sigma = d / (2 * math.sqrt(2 * math.log(2)))
            amp = np.exp(-(r**2) / (2 * sigma**2))
        probe = amp * np.exp(1j * curvature * (r / (d / 2)) ** 2)
    else:
        raise ConfigError(f"kind: expected one of {', '.join(PROBE_KINDS)}, found {kind!r}")
    probe = probe / np.abs(probe).max()
    if aberration:
        # Coma/astigmatism-like odd phase: real optics are never centrosymmetric, and a
        # symmetric probe leaves every single pattern with a twin-image ambiguity.
        yy, xx = (np.mgrid[:N, :N] - (N - 1) / 2) / (N / 2)
        probe = probe * np.exp(1j * aberration * (xx**3 + 0.5 * yy**3 + xx * yy))
    return probe.astype(np.complex64)


# ---------------------------------------------------------------------------------------------
# Scan
# ---------------------------------------------------------------------------------------------


def _valid_range(size: int, n: int, margin: float, axis: str) -> tuple[float, float]:
    lo = margin + (n - 1) / 2
    hi = size - 1 - margin - (n - 1) / 2
    if hi < lo:
        raise ConfigError(
            f"object_shape: expected the {axis} size ({size}) to hold a patch of N={n} plus "
            f"margin={margin} on each side, found it too small"
        )
    return lo, hi


def _raster(
    lo: tuple[float, float], hi: tuple[float, float], step: float | None, n_points: int | None
) -> tuple[np.ndarray, np.ndarray]:
    (xlo, ylo), (xhi, yhi) = lo, hi
    if step is not None:
        nx = int(np.floor((xhi - xlo) / step + 1e-9)) + 1
        ny = int(np.floor((yhi - ylo) / step + 1e-9)) + 1
        xs = xlo + ((xhi - xlo) - (nx - 1) * step) / 2 + step * np.arange(nx)
        ys = ylo + ((yhi - ylo) - (ny - 1) * step) / 2 + step * np.arange(ny)
    else:
        assert n_points is not None
        wx, wy = max(xhi - xlo, 1.0), max(yhi - ylo, 1.0)
        nx = max(1, math.ceil(math.sqrt(n_points * wx / wy)))
        ny = max(1, math.ceil(n_points / nx))
        xs = np.linspace(xlo, xhi, nx) if nx > 1 else np.array([(xlo + xhi) / 2])
        ys = np.linspace(ylo, yhi, ny) if ny > 1 else np.array([(ylo + yhi) / 2])
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    x, y = xx.ravel(), yy.ravel()
    if n_points is not None:
        if x.size < n_points:
            raise ConfigError(
                f"n_points: expected at most {x.size} raster points with step={step} in the "
                f"scannable area, found {n_points}"
            )
        x, y = x[:n_points], y[:n_points]
    return x, y


def _spiral_points(
    centre: tuple[float, float],
    c: float,
    lo: tuple[float, float],
    hi: tuple[float, float],
    limit: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fermat spiral ``r = c sqrt(k)`` points inside the box, in spiral order."""
    half_diag = math.hypot(hi[0] - lo[0], hi[1] - lo[1]) / 2
    k_max = int((half_diag / c) ** 2) + 2
    k = np.arange(k_max)
    r = c * np.sqrt(k)
    t = k * _GOLDEN_ANGLE
    x = centre[0] + r * np.cos(t)
    y = centre[1] + r * np.sin(t)
    eps = 1e-9
    ok = (x >= lo[0] - eps) & (x <= hi[0] + eps) & (y >= lo[1] - eps) & (y <= hi[1] + eps)
    x, y = x[ok], y[ok]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def _spiral(
    lo: tuple[float, float], hi: tuple[float, float], step: float | None, n_points: int | None
) -> tuple[np.ndarray, np.ndarray]:
    centre = ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)
    if step is not None:
        # Area per point pi c^2 equals that of a square grid of spacing `step`.
        x, y = _spiral_points(centre, step / math.sqrt(math.pi), lo, hi, n_points)
        if n_points is not None and x.size < n_points:
            raise ConfigError(
                f"n_points: expected at most {x.size} spiral points with step={step} in the "
                f"scannable area, found {n_points}"
            )
        return x, y
    assert n_points is not None
    area = max(hi[0] - lo[0], 1.0) * max(hi[1] - lo[1], 1.0)
    c = math.sqrt(area / (math.pi * n_points))
    for _ in range(200):
        x, y = _spiral_points(centre, c, lo, hi, n_points)
        if x.size >= n_points:
            return x, y
        c *= 0.97
    raise ConfigError(f"n_points: could not place {n_points} spiral points in the scannable area")


def _apply_jitter(
    x: np.ndarray,
    y: np.ndarray,
    jitter: float,
    jitter_kind: str,
    lo: tuple[float, float],
    hi: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Add random offsets; offsets that leave the box are redrawn, then (rarely) clipped."""

    def draw(size: int) -> np.ndarray:
        if jitter_kind == "gaussian":
            return rng.normal(0.0, jitter, size)
        return rng.uniform(-jitter, jitter, size)

    out = []
    for base, a, b in ((x, lo[0], hi[0]), (y, lo[1], hi[1])):
        v = base + draw(base.size)
        for _ in range(20):
            bad = (v < a) | (v > b)
            if not bad.any():
                break
            v[bad] = base[bad] + draw(int(bad.sum()))
        out.append(np.clip(v, a, b))
    return out[0], out[1]


def make_scan(
    kind: str,
    object_shape: int | tuple[int, int],
    N: int,
    *,
    step: float | None = None,
    n_points: int | None = None,
    jitter: float = 0.0,
    jitter_kind: str = "gaussian",
    seed: SeedLike = None,
    margin: float = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scan positions ``(xcoords, ycoords)`` (float64 object pixels) whose patches fit.

    Every centre satisfies ``c - (N-1)/2 >= margin`` and ``c + (N-1)/2 <= size-1-margin``.

    Args:
        kind: ``"raster"`` (grid of spacing ``step`` centred in the scannable area, or an
            ``n_points`` grid spanning it), ``"spiral"`` (Fermat spiral, point density of a
            ``step`` grid, or exactly ``n_points`` filling the area), ``"random"`` (uniform,
            ``n_points`` or as many as a ``step`` grid would have). With both ``step`` and
            ``n_points``, raster and spiral keep their first ``n_points`` positions.
        step: px; default ``N / 8`` when ``n_points`` is not given either.
        jitter: px; std (``jitter_kind="gaussian"``) or half-width (``"uniform"``) of
            random offsets added to every position.
    """
    h, w = _shape2(object_shape, "object_shape")
    if not isinstance(N, int | np.integer) or N < 1:
        raise ConfigError(f"N: expected a positive integer, found {N!r}")
    if kind not in SCAN_KINDS:
        raise ConfigError(f"scan kind: expected one of {', '.join(SCAN_KINDS)}, found {kind!r}")
    if step is not None and not step > 0:
        raise ConfigError(f"step: expected a positive number of px, found {step}")
    if n_points is not None and (not isinstance(n_points, int | np.integer) or n_points < 1):
        raise ConfigError(f"n_points: expected a positive integer, found {n_points!r}")
    if not jitter >= 0:
        raise ConfigError(f"jitter: expected a non-negative number of px, found {jitter}")
    if jitter_kind not in JITTER_KINDS:
        raise ConfigError(f"jitter_kind: expected one of {JITTER_KINDS}, found {jitter_kind!r}")
    if margin < 0:
        raise ConfigError(f"margin: expected a non-negative number of px, found {margin}")
    if step is None and n_points is None:
        step = N / 8
    xlo, xhi = _valid_range(w, int(N), margin, "width")
    ylo, yhi = _valid_range(h, int(N), margin, "height")
    lo, hi = (xlo, ylo), (xhi, yhi)
    rng = np.random.default_rng(seed)
    if kind == "raster":
        x, y = _raster(lo, hi, step, n_points)
    elif kind == "spiral":
        x, y = _spiral(lo, hi, step, n_points)
    else:
        if n_points is None:
            assert step is not None
            n_points = max(1, round((xhi - xlo + step) * (yhi - ylo + step) / step**2))
        x = rng.uniform(xlo, xhi, n_points)
        y = rng.uniform(ylo, yhi, n_points)
    if jitter > 0:
        x, y = _apply_jitter(x, y, jitter, jitter_kind, lo, hi, rng)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


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
    power = np.abs(probe.astype(np.complex128)) ** 2
    totals = np.einsum("mij,ij->m", np.abs(patches.astype(np.complex128)) ** 2, power)
    mean = float(totals.mean())
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


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


@dataclass
class SimulationConfig:
    """Parameters of a synthetic dataset (see :func:`simulate_dataset`).

    Defaults: a 256 x 256 object (GRF amplitude, "lines" phase, band-limited to half
    Nyquist), a defocused-lens probe of N=64, a raster scan of step 7 px (28 x 28 = 784
    positions, ~89 % linear overlap) with 0.5 px Gaussian jitter, 1e6 photons per pattern
    with Poisson noise. ``object_seed`` (default: derived from ``seed``) lets a test set share
    the probe and scan of a training set while getting a different object.
    """

    N: int = 64
    object_size: int | tuple[int, int] = 256
    object_amplitude: str = "grf"
    object_phase: str = "lines"
    amplitude_range: tuple[float, float] = (0.5, 1.0)
    phase_range: tuple[float, float] = (-np.pi / 2, np.pi / 2)
    band_limit: float | None = 0.5
    probe_kind: str = "lens"
    probe_diameter: float | None = None
    probe_defocus: float | None = None
    probe_curvature: float = 0.0
    probe_aberration: float = 2.0
    scan_kind: str = "raster"
    step: float | None = 7.0
    n_points: int | None = None
    jitter: float = 0.5
    margin: float = 0.0
    nphotons: float | None = 1e6
    poisson: bool = True
    seed: int | None = 0
    object_seed: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def object_shape(self) -> tuple[int, int]:
        return _shape2(self.object_size, "object_size")

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""

        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(
                f"SimulationConfig.{name}: expected {expected}, found {getattr(self, name)!r}"
            )

        if not isinstance(self.N, int | np.integer) or isinstance(self.N, bool) or self.N < 4:
            raise bad("N", "an integer >= 4")
        try:
            h, w = _shape2(self.object_size, "object_size")
        except ConfigError:
            raise bad("object_size", "a positive int or (height, width)") from None
        if not (_is_real(self.margin) and self.margin >= 0):
            raise bad("margin", "a non-negative number of px")
        if min(h, w) < self.N + 2 * self.margin:
            raise bad("object_size", f"at least N + 2*margin = {self.N + 2 * self.margin} px")
        if h * w > MAX_OBJECT_PIXELS:
            raise bad(
                "object_size",
                f"at most {MAX_OBJECT_PIXELS} pixels in all (e.g. 8192 x 8192; the object, its "
                "patches and patterns are held in memory)",
            )
        for name in ("object_amplitude", "object_phase"):
            if getattr(self, name) not in PATTERN_KINDS:
                raise bad(name, f"one of {', '.join(PATTERN_KINDS)}")
        for name in ("amplitude_range", "phase_range"):
            try:
                lo, _ = _check_range(getattr(self, name), name)
            except ConfigError:
                raise bad(name, "a finite (low, high) pair with low <= high") from None
            if name == "amplitude_range" and lo < 0:
                raise bad(name, "non-negative amplitudes")
        if self.band_limit is not None and not (
            _is_real(self.band_limit) and 0.0 < self.band_limit <= 1.0
        ):
            raise bad("band_limit", "None or a fraction of Nyquist in (0, 1]")
        if self.probe_kind not in PROBE_KINDS:
            raise bad("probe_kind", f"one of {', '.join(PROBE_KINDS)}")
        if self.probe_diameter is not None and not (
            _is_real(self.probe_diameter) and 0 < self.probe_diameter <= self.N
        ):
            raise bad("probe_diameter", f"None or a diameter in (0, N={self.N}] px")
        if self.scan_kind not in SCAN_KINDS:
            raise bad("scan_kind", f"one of {', '.join(SCAN_KINDS)}")
        if self.step is not None and not (_is_real(self.step) and self.step > 0):
            raise bad("step", "None or a positive number of px")
        if self.n_points is not None and (
            not isinstance(self.n_points, int | np.integer) or self.n_points < 1
        ):
            raise bad("n_points", "None or a positive integer")
        if not (_is_real(self.jitter) and self.jitter >= 0):
            raise bad("jitter", "a non-negative number of px")
        if self.nphotons is not None and not (
            _is_real(self.nphotons) and np.isfinite(self.nphotons) and self.nphotons > 0
        ):
            raise bad("nphotons", "None or a positive number")
        if not isinstance(self.poisson, bool | np.bool_):
            raise bad("poisson", "a boolean")
        for name in ("seed", "object_seed"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0
            ):
                raise bad(name, "None or a non-negative integer")


def _is_real(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _plain(value: Any) -> Any:
    """JSON-friendly copy of config values (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def simulate_dataset(
    cfg: SimulationConfig | None = None,
    *,
    obj: np.ndarray | None = None,
    probe: np.ndarray | None = None,
    **overrides: Any,
) -> PtychoData:
    """Simulate a full dataset (object, probe, scan, noisy diffraction, labels).

    Args:
        cfg: the configuration (default :class:`SimulationConfig()`); ``overrides`` replace
            its fields, e.g. ``simulate_dataset(seed=1, nphotons=1e4)``.
        obj: use this (H, W) complex object instead of generating one.
        probe: use this (N, N) probe instead of generating one; it is still rescaled to
            ``nphotons`` unless ``nphotons=None``. To reuse a probe exactly, pass
            ``probe=other.probe, nphotons=None``, or keep ``seed`` and change ``object_seed``.

    Returns:
        :class:`PtychoData` with amplitudes ``sqrt(counts)`` (float32), the scaled probe, the
        object and the exact patches as ``labels``; ``metadata`` records the configuration.
    """
    cfg = cfg or SimulationConfig()
    if overrides:
        known = {f.name for f in fields(SimulationConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"simulate_dataset: unknown SimulationConfig field(s) {unknown}; "
                f"expected some of {sorted(known)}"
            )
        cfg = replace(cfg, **overrides)
    seq_obj, seq_scan, seq_noise = np.random.SeedSequence(cfg.seed).spawn(3)
    n = cfg.N

    if obj is None:
        obj_seed = seq_obj if cfg.object_seed is None else cfg.object_seed
        obj = make_object(
            cfg.object_shape,
            amplitude=cfg.object_amplitude,
            phase=cfg.object_phase,
            amplitude_range=cfg.amplitude_range,
            phase_range=cfg.phase_range,
            band_limit=cfg.band_limit,
            seed=obj_seed,
        )
    else:
        obj = np.asarray(obj)
        if obj.ndim != 2 or min(obj.shape) < n:
            raise DataValidationError(
                f"obj: expected a 2-D array of at least {n} x {n}, found shape {obj.shape}"
            )
        obj = obj.astype(np.complex64)

    if probe is None:
        probe = make_probe(
            n,
            kind=cfg.probe_kind,
            diameter=cfg.probe_diameter,
            defocus=cfg.probe_defocus,
            curvature=cfg.probe_curvature,
            aberration=cfg.probe_aberration,
        )
    else:
        probe = np.asarray(probe)
        if probe.shape != (n, n):
            raise DataValidationError(
                f"probe: expected shape ({n}, {n}) to match N, found {probe.shape}"
            )

    x, y = make_scan(
        cfg.scan_kind,
        obj.shape,
        n,
        step=cfg.step,
        n_points=cfg.n_points,
        jitter=cfg.jitter,
        seed=seq_scan,
        margin=cfg.margin,
    )
    passband = 0.5 if cfg.band_limit is None else cfg.band_limit
    patches = extract_patches_exact(obj, x, y, n, passband=passband)
    counts, scaled = simulate_diffraction(
        obj,
        probe,
        x,
        y,
        nphotons=cfg.nphotons,
        poisson=cfg.poisson,
        seed=seq_noise,
        patches=patches,
    )
    scale = float(np.abs(scaled).max() / max(np.abs(probe).max(), 1e-30))
    logger.info(
        "simulated %d patterns of %dx%d on a %dx%d object (mean counts %.4g, probe scale %.4g)",
        x.size,
        n,
        n,
        obj.shape[0],
        obj.shape[1],
        float(counts.sum((1, 2)).mean()),
        scale,
    )
    metadata = {
        "simulated": True,
        "nphotons": cfg.nphotons,
        "seed": cfg.seed,
        "object_seed": cfg.object_seed,
        "probe_scale": scale,
        "extraction_passband": passband,
        "poisson": cfg.poisson,
        "simulation": {k: _plain(v) for k, v in asdict(cfg).items()},
    }
    return PtychoData(
        diffraction=np.sqrt(counts).astype(np.float32),
        xcoords=x,
        ycoords=y,
        probe=scaled.astype(np.complex64),
        object=obj,
        labels=patches,
        source="<simulated>",
        metadata=metadata,
    )
