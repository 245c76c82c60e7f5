"""Quality metrics for complex reconstructions judged against a ground-truth object.

Ptychography recovers the object only up to ambiguities that carry no information about
reconstruction quality: a global phase offset, a linear phase ramp (probe or position drift
moves the diffraction patterns' centre), a sub-pixel translation and an amplitude scale.
Scoring a reconstruction without removing them punishes a perfect result, so :func:`align`
removes all four before :func:`evaluate` computes SSIM, PSNR, relative error and FRC.

Conventions: images are (H, W) arrays, pixel centres at integers, ``x`` = column and
``y`` = row; shifts are ``[dy, dx]`` and are the translation that must be *applied to the
reconstruction* to register it onto the truth; phase planes are ``a + b*x + c*y`` in
radians with ``x, y`` absolute pixel indices. Translations use periodic Fourier shifts, so
content near the image border wraps around: score inside a mask that excludes the border
(e.g. :func:`scanned_region_mask`), which the scan leaves poorly constrained anyway.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, signal
from skimage.metrics import structural_similarity
from skimage.registration import phase_cross_correlation

from ptychopinn.errors import DataValidationError

logger = logging.getLogger(__name__)

#: PSNR of identical images is infinite; reports are JSON, so it is capped at this value.
PSNR_CAP_DB = 200.0
#: Smallest bounding box side (pixels) on which SSIM (7x7 window) and FRC are meaningful.
MIN_BOX = 8
#: Pixels whose summed probe intensity over the scan is below this fraction of the best-lit
#: pixel's were not measured (the stitching floor of ``PatchAccumulator`` is the same): a
#: probe much smaller than its N x N window leaves such a band around the scan.
UNLIT_FRACTION = 1e-3

_SSIM_WIN = 7
_ALIGN_ITERS = 5
_SHIFT_TOL = 0.01  # pixels: registration refinements smaller than this stop the iteration


# ----------------------------------------------------------------------------- validation


def _as_image(arr: Any, name: str) -> np.ndarray:
    """``arr`` as a finite complex128 2-D image, or a DataValidationError naming ``name``."""
    a = np.asarray(arr)
    if a.ndim != 2:
        raise DataValidationError(f"{name}: expected a 2-D image, found shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataValidationError(f"{name}: expected a numeric image, found dtype {a.dtype}")
    a = a.astype(np.complex128)
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise DataValidationError(
            f"{name}: expected finite values everywhere, found {bad} NaN/Inf pixel(s) of "
            f"{a.size}; replace them (e.g. np.nan_to_num) before scoring"
        )
    return a


def _validate_pair(a: Any, b: Any, names: tuple[str, str] = ("recon", "truth")):
    """Validate two images and require identical shapes."""
    x = _as_image(a, names[0])
    y = _as_image(b, names[1])
    if x.shape != y.shape:
        raise DataValidationError(
            f"{names[0]} and {names[1]} must have the same shape; found {names[0]} "
            f"{x.shape} and {names[1]} {y.shape}"
        )
    return x, y


def _validate_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of ``shape`` (all True when None); it must select at least one pixel."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise DataValidationError(f"mask: expected shape {tuple(shape)}, found {m.shape}")
    if m.dtype != np.bool_:
        if not np.all(np.isfinite(m)):
            raise DataValidationError("mask: expected finite values, found NaN/Inf")
        m = m != 0
    if not m.any():
        raise DataValidationError("mask: selects no pixels (all False)")
    return m


# ----------------------------------------------------------------------------- small helpers


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    """Slices of the bounding box of the True pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _centred_square(mask: np.ndarray) -> tuple[slice, slice]:
    """Largest square centred in the bounding box of ``mask`` (FRC needs square rings)."""
    rs, cs = _bbox(mask)
    h, w = rs.stop - rs.start, cs.stop - cs.start
    n = min(h, w)
    r0 = rs.start + (h - n) // 2
    c0 = cs.start + (w - n) // 2
    return slice(r0, r0 + n), slice(c0, c0 + n)


def _taper(mask: np.ndarray, width: float) -> np.ndarray:
    """``mask`` with a raised-cosine edge ``width`` pixels wide on its inside.

    FFT-based steps (registration, FRC) see a hard mask edge as broadband content common to
    both images; the soft edge removes that artefact. Array borders count as mask edges.
    """
    padded = np.pad(mask, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    ramp = np.clip(dist / max(float(width), 1e-12), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * ramp)


def _taper_width(mask: np.ndarray) -> float:
    """About a tenth of the mask's bounding box, between 2 and 16 pixels."""
    rs, cs = _bbox(mask)
    return float(np.clip(0.1 * min(rs.stop - rs.start, cs.stop - cs.start), 2.0, 16.0))


def _plane(coef: np.ndarray, shape: tuple[int, ...], origin: Any = (0.0, 0.0)) -> np.ndarray:
    """Phase plane ``a + b*x + c*y`` sampled at pixel ``(y, x) + origin``."""
    a, b, c = (float(v) for v in coef)
    yy = np.arange(shape[0], dtype=np.float64)[:, None] + float(origin[0])
    xx = np.arange(shape[1], dtype=np.float64)[None, :] + float(origin[1])
    return a + b * xx + c * yy


def _wrap(phase: float) -> float:
    """Angle wrapped into (-pi, pi]."""
    return float(np.angle(np.exp(1j * phase)))


# ----------------------------------------------------------------------------- scan mask


def scanned_region_mask(
    xcoords: Any,
    ycoords: Any,
    N: int,
    shape: tuple[int, int],
    *,
    margin: int | None = None,
) -> np.ndarray:
    """Pixels covered by at least one N x N patch, eroded by ``margin`` pixels.

    A patch centred at ``c`` samples ``c - (N-1)/2 + [0..N-1]``; a pixel counts as covered
    when its centre lies within that sampled extent (for half-pixel extents, e.g. even N at an
    integer centre, the two outermost half-covered pixels are left out). Edges of the scanned
    region are seen by few patterns and poorly constrained, so they are eroded by ``margin``
    (default ``N // 4``) with a square element; if that leaves nothing, the un-eroded region
    is returned with a warning.
    """
    x = np.asarray(xcoords, dtype=np.float64).ravel()
    y = np.asarray(ycoords, dtype=np.float64).ravel()
    if x.size == 0 or x.shape != y.shape:
        raise DataValidationError(
            f"xcoords/ycoords: expected two non-empty arrays of equal length, found "
            f"{x.size} and {y.size} values"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise DataValidationError("xcoords/ycoords: expected finite values, found NaN/Inf")
    if int(N) != N or N < 1:
        raise DataValidationError(f"N: expected a positive integer patch size, found {N!r}")
    if len(shape) != 2 or min(shape) < 1:
        raise DataValidationError(f"shape: expected a positive (H, W), found {shape!r}")
    if margin is None:
        margin = int(N) // 4
    if int(margin) != margin or margin < 0:
        raise DataValidationError(f"margin: expected an integer >= 0, found {margin!r}")
    h, w = int(shape[0]), int(shape[1])
    half = (int(N) - 1) / 2.0
    eps = 1e-9  # float noise must not drop a pixel whose centre sits exactly on the edge
    r0 = np.clip(np.ceil(y - half - eps), 0, h).astype(np.int64)
    r1 = np.clip(np.floor(y + half + eps) + 1, 0, h).astype(np.int64)  # exclusive
    c0 = np.clip(np.ceil(x - half - eps), 0, w).astype(np.int64)
    c1 = np.clip(np.floor(x + half + eps) + 1, 0, w).astype(np.int64)
    keep = (r1 > r0) & (c1 > c0)
    if not keep.any():
        raise DataValidationError(
            f"xcoords/ycoords: no {N}x{N} patch overlaps the canvas of shape {(h, w)}"
        )
    r0, r1, c0, c1 = r0[keep], r1[keep], c0[keep], c1[keep]
    # 2-D difference array: O(M + H*W) however many positions there are.
    diff = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.add.at(diff, (r0, c0), 1)
    np.add.at(diff, (r0, c1), -1)
    np.add.at(diff, (r1, c0), -1)
    np.add.at(diff, (r1, c1), 1)
    covered = diff.cumsum(axis=0).cumsum(axis=1)[:h, :w] > 0
    if margin == 0:
        return covered
    eroded = ndimage.minimum_filter(
        covered.astype(np.uint8), size=2 * int(margin) + 1, mode="constant", cval=0
    ).astype(bool)
    if not eroded.any():
        warnings.warn(
            f"scanned_region_mask: an erosion margin of {margin} px leaves no pixels; "
            "using the un-eroded scanned region",
            stacklevel=2,
        )
        return covered
    return eroded


def illuminated_mask(
    probe: Any,
    xcoords: Any,
    ycoords: Any,
    shape: tuple[int, int],
    *,
    fraction: float = UNLIT_FRACTION,
) -> np.ndarray:
    """Pixels whose probe intensity summed over the scan reaches ``fraction`` of its peak.

    Each position lights its N x N patch (placed as :func:`scanned_region_mask` places it,
    rounded to whole pixels) with ``|probe|**2``; the sum is one FFT convolution of the
    positions' histogram with the probe intensity, whatever the number of positions.
    """
    intensity = np.abs(np.asarray(probe)) ** 2
    if intensity.ndim != 2 or intensity.shape[0] != intensity.shape[1]:
        raise DataValidationError(
            f"probe: expected an (N, N) array, found shape {tuple(intensity.shape)}"
        )
    if not (np.all(np.isfinite(intensity)) and intensity.max() > 0):
        raise DataValidationError("probe: expected finite values with some intensity")
    N = intensity.shape[0]
    h, w = int(shape[0]), int(shape[1])
    x = np.asarray(xcoords, dtype=np.float64).ravel()
    y = np.asarray(ycoords, dtype=np.float64).ravel()
    # Top-left corners, offset by N so that patches hanging over the edge still count.
    rows = np.rint(y - (N - 1) / 2).astype(np.int64) + N
    cols = np.rint(x - (N - 1) / 2).astype(np.int64) + N
    inside = (rows >= 0) & (rows < h + 2 * N) & (cols >= 0) & (cols < w + 2 * N)
    corners = np.zeros((h + 2 * N, w + 2 * N), dtype=np.float32)  # float32: half the memory
    np.add.at(corners, (rows[inside], cols[inside]), 1.0)
    kernel = (intensity / intensity.max()).astype(np.float32)
    lit = signal.fftconvolve(corners, kernel, mode="full")
    lit = lit[N : N + h, N : N + w]
    peak = float(lit.max()) if lit.size else 0.0
    if not peak > 0:
        return np.zeros((h, w), dtype=bool)
    return lit >= fraction * peak


# ----------------------------------------------------------------------------- registration


def apply_shift(img: Any, shift: Any) -> np.ndarray:
    """Translate ``img`` by ``shift = [dy, dx]`` pixels (sub-pixel, periodic Fourier shift).

    ``out[y, x] = img[y - dy, x - dx]``. Complex input gives complex128, real input float64.
    """
    a = np.asarray(img)
    s = np.asarray(shift, dtype=np.float64).ravel()
    if a.ndim != 2 or s.shape != (2,):
        raise ValueError(f"apply_shift: expected a 2-D image and [dy, dx]; got {a.shape}, {s}")
    if not np.any(s):
        return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)
    out = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(a), s))
    return out if np.iscomplexobj(a) else out.real


def _centred(img: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    """Weighted-mean-subtracted, weighted image; None when it has no contrast.

    Without the mean subtraction the correlation of the two (static) windows peaks at zero
    shift and biases the estimate towards no shift.
    """
    wsum = weight.sum()
    mean = (img * weight).sum() / wsum if wsum > 0 else 0.0
    out = (img - mean) * weight
    if not np.linalg.norm(out) > 1e-10 * np.linalg.norm(img * weight):
        return None  # constant (up to rounding): correlating it would register noise
    return out


def _wrap_shift(shift: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Periodic shifts folded into [-size/2, size/2) per axis."""
    size = np.asarray(shape[:2], dtype=np.float64)
    return (shift + size / 2) % size - size / 2


def register_translation(
    recon: Any, truth: Any, *, mask: Any = None, upsample: int = 20, refine: int = 2
) -> np.ndarray:
    """Sub-pixel ``[dy, dx]`` that registers ``recon`` onto ``truth`` (see :func:`apply_shift`).

    Cross-correlates the complex fields (invariant to a global phase and amplitude scale)
    inside a soft-edged ``mask``, located to ``1/upsample`` pixel. Unnormalised correlation is
    used: phase correlation whitens the spectrum and is dominated by noise for band-limited
    objects. Each of ``refine`` passes re-registers the shifted reconstruction, removing the
    small bias of the static window. A strong linear phase ramp degrades the estimate;
    :func:`align` removes the ramp first.
    """
    r, t = _validate_pair(recon, truth)
    m = _validate_mask(mask, t.shape)
    if int(upsample) < 1:
        raise ValueError(f"upsample: expected an integer >= 1, found {upsample!r}")
    box = _bbox(m)
    weight = _taper(m[box], _taper_width(m))
    ref = _centred(t[box], weight)
    if ref is None:
        warnings.warn("register_translation: truth has no contrast in the mask", stacklevel=2)
        return np.zeros(2)
    total = np.zeros(2)
    moving = r
    for _ in range(1 + max(int(refine), 0)):
        mov = _centred(moving[box], weight)
        if mov is None:
            warnings.warn(
                "register_translation: reconstruction has no contrast in the mask; not registering",
                stacklevel=2,
            )
            break
        step, _, _ = phase_cross_correlation(
            ref, mov, upsample_factor=int(upsample), normalization=None
        )
        total = _wrap_shift(total + step, t.shape)
        if np.max(np.abs(step)) < _SHIFT_TOL:
            break
        moving = apply_shift(r, total)
    return total


def _spectral_ramp(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, upsample: int):
    """Estimate the phase-ramp slopes ``(b, c)`` of ``recon`` relative to ``truth``.

    A ramp ``exp(i(b x + c y))`` translates the Fourier spectrum while a translation leaves
    the spectrum's modulus unchanged, so registering the moduli finds the ramp before the
    images are registered (a strong ramp would otherwise corrupt the registration).
    """
    box = _bbox(mask)
    weight = _taper(mask[box], _taper_width(mask))
    ft = np.abs(np.fft.fftshift(np.fft.fft2(truth[box] * weight)))
    fr = np.abs(np.fft.fftshift(np.fft.fft2(recon[box] * weight)))
    if not (np.any(ft) and np.any(fr)):
        return 0.0, 0.0
    step, _, _ = phase_cross_correlation(ft, fr, upsample_factor=upsample, normalization=None)
    h, w = ft.shape
    return -2 * np.pi * step[1] / w, -2 * np.pi * step[0] / h


# ----------------------------------------------------------------------------- phase and scale


def _coarse_ramp(p: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Slopes ``(b, c)`` at the peak of the 2x zero-padded FFT of ``p`` over the mask."""
    box = _bbox(mask)
    q = np.where(mask, p, 0)[box]
    size = (sfft.next_fast_len(2 * q.shape[0]), sfft.next_fast_len(2 * q.shape[1]))
    spec = np.abs(sfft.fft2(q, s=size))
    iy, ix = np.unravel_index(int(np.argmax(spec)), spec.shape)
    fy = np.fft.fftfreq(size[0])[iy]
    fx = np.fft.fftfreq(size[1])[ix]
    return 2 * np.pi * float(fx), 2 * np.pi * float(fy)


def _fit_plane(p: np.ndarray, mask: np.ndarray, *, ramp: bool, max_iter: int = 30) -> np.ndarray:
    """Coefficients ``[a, b, c]`` of the phase plane of ``p = recon * conj(truth)`` on the mask.

    Weighted by ``|p|`` (phase is meaningless where either field vanishes). Unwrap-safe: the
    slopes start from the FFT peak of ``p`` and are refined by least squares on the *wrapped*
    residual ``angle(p * exp(-i plane))``; the candidate with the largest coherent sum
    ``|sum p exp(-i plane)|`` wins. The offset is the circular mean of the residual.
    """
    yy, xx = np.nonzero(mask)
    pv = p[mask]
    wv = np.abs(pv)
    wsum = wv.sum()
    if not wsum > 0:
        return np.zeros(3)
    xc = float((wv * xx).sum() / wsum)
    yc = float((wv * yy).sum() / wsum)
    xs = xx - xc
    ys = yy - yc
    b = c = 0.0
    if ramp:

        def score(bb: float, cc: float) -> float:
            return float(np.abs(np.sum(pv * np.exp(-1j * (bb * xs + cc * ys)))))

        b, c = _coarse_ramp(p, mask)
        best = (score(b, c), b, c)
        sw = np.sqrt(wv)
        design = np.stack([np.ones_like(xs), xs, ys], axis=1) * sw[:, None]
        span = max(float(np.abs(xs).max()), float(np.abs(ys).max()), 1.0)
        a = float(np.angle(np.sum(pv * np.exp(-1j * (b * xs + c * ys)))))
        for _ in range(max_iter):
            resid = np.angle(pv * np.exp(-1j * (a + b * xs + c * ys)))
            da, db, dc = np.linalg.lstsq(design, resid * sw, rcond=None)[0]
            a, b, c = a + da, b + db, c + dc
            current = score(b, c)
            if current > best[0]:
                best = (current, b, c)
            if (abs(db) + abs(dc)) * span < 1e-9:
                break
        _, b, c = best
    offset = float(np.angle(np.sum(pv * np.exp(-1j * (b * xs + c * ys)))))
    return np.array([offset - b * xc - c * yc, b, c])


def fit_phase_ramp(recon: Any, truth: Any, mask: Any = None, *, ramp: bool = True):
    """Plane ``(a, b, c)`` (radians; ``a + b*x + c*y``) matching the phase of recon/truth.

    With ``ramp=False`` only the global offset ``a`` is fitted (``b = c = 0``).
    """
    r, t = _validate_pair(recon, truth)
    m = _validate_mask(mask, t.shape)
    a, b, c = _fit_plane(r * np.conj(t), m, ramp=ramp)
    return float(a), float(b), float(c)


def remove_phase_ramp_and_offset(recon: Any, truth: Any, mask: Any = None) -> np.ndarray:
    """``recon`` with the phase plane and global offset relative to ``truth`` removed."""
    r, t = _validate_pair(recon, truth)
    m = _validate_mask(mask, t.shape)
    coef = _fit_plane(r * np.conj(t), m, ramp=True)
    return r * np.exp(-1j * _plane(coef, r.shape))


def fit_amplitude_scale(recon: Any, truth: Any, mask: Any = None) -> float:
    """Least-squares ``s`` minimising ``||s|recon| - |truth|||^2`` over the mask."""
    r, t = _validate_pair(recon, truth)
    m = _validate_mask(mask, t.shape)
    ar = np.abs(r[m])
    den = float(np.sum(ar * ar))
    if not den > 0:
        warnings.warn("fit_amplitude_scale: reconstruction is zero in the mask", stacklevel=2)
        return 1.0
    return float(np.sum(ar * np.abs(t[m])) / den)


# ----------------------------------------------------------------------------- alignment


def align(
    recon: Any,
    truth: Any,
    *,
    mask: Any = None,
    register: bool = True,
    phase_ramp: bool = True,
    scale: bool = True,
    upsample: int = 20,
    max_shift: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Remove translation, phase ramp, phase offset and amplitude scale from ``recon``.

    A registration larger than ``max_shift`` pixels (default: a tenth of the mask's smaller
    side) is taken as a failure (poor reconstructions can correlate best at a wrap-around
    shift) and the reconstruction is compared unshifted, with a warning.

    Translation and ramp are estimated alternately (each biases the other): the ramp is first
    estimated from the spectra's moduli (blind to translation), then registration of the
    de-ramped field and a least-squares refinement of the ramp alternate until the shift
    changes by less than 0.01 px. The global offset is always removed.

    Returns ``(aligned, info)``: ``aligned`` is complex128 with ``aligned[y, x] ~ truth[y, x]``
    and ``info`` holds ``shift`` ``[dy, dx]`` applied to ``recon``, ``phase_ramp``
    ``[a, b, c]`` (rad; plane ``a + b*x + c*y`` removed in the truth frame), ``phase_offset``
    (the amplitude-weighted mean of that plane over the mask, wrapped to (-pi, pi]) and
    ``amplitude_scale`` (factor multiplied into the reconstruction).
    """
    r, t = _validate_pair(recon, truth)
    m = _validate_mask(mask, t.shape)
    shape = t.shape
    coef = np.zeros(3)
    shift = np.zeros(2)
    if register:
        if phase_ramp:
            b0, c0 = _spectral_ramp(r, t, m, int(upsample))
            coef = np.array([0.0, b0, c0])
        for _ in range(_ALIGN_ITERS):
            work = r * np.exp(-1j * _plane(coef, shape, origin=shift))
            step = register_translation(apply_shift(work, shift), t, mask=m, upsample=upsample)
            new_shift = _wrap_shift(shift + step, shape)
            moved = float(np.max(np.abs(step)))
            shift = new_shift
            if not phase_ramp:
                break
            shifted = apply_shift(r * np.exp(-1j * _plane(coef, shape, origin=shift)), shift)
            coef = coef + _fit_plane(shifted * np.conj(t), m, ramp=True)
            if moved < _SHIFT_TOL:
                break
        box = _bbox(m)
        limit = (
            max_shift
            if max_shift is not None
            else 0.1 * min(box[0].stop - box[0].start, box[1].stop - box[1].start)
        )
        if float(np.max(np.abs(shift))) > limit:
            warnings.warn(
                f"align: registration found a {np.round(shift, 1).tolist()} px shift, more than "
                f"{limit:.1f} px; comparing without registration",
                stacklevel=2,
            )
            return align(
                r, t, mask=m, register=False, phase_ramp=phase_ramp, scale=scale, upsample=upsample
            )
    shifted = apply_shift(r * np.exp(-1j * _plane(coef, shape, origin=shift)), shift)
    delta = _fit_plane(shifted * np.conj(t), m, ramp=phase_ramp)
    coef = coef + delta
    aligned = shifted * np.exp(-1j * _plane(delta, shape))
    weights = np.abs(aligned[m]) * np.abs(t[m])
    offset = float(np.angle(np.sum(weights * np.exp(1j * _plane(coef, shape)[m]))))
    amp_scale = fit_amplitude_scale(aligned, t, m) if scale else 1.0
    aligned = aligned * amp_scale
    info = {
        "shift": [float(shift[0]), float(shift[1])],
        "phase_offset": offset,
        "phase_ramp": [_wrap(coef[0]), float(coef[1]), float(coef[2])],
        "amplitude_scale": float(amp_scale),
    }
    logger.debug("alignment: %s", info)
    return aligned, info


# ----------------------------------------------------------------------------- FRC


def frc(a: Any, b: Any, *, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two images in rings one frequency pixel wide.

    Computed on the largest square centred in the mask's bounding box, weighted by the
    mask with a raised-cosine edge (a Tukey-like window when the mask fills the square) so
    the square's edges add no spurious correlated high frequencies. Returns ``(freq, curve)``
    with ``freq`` in cycles/pixel from 0 to 0.5 (for even sides) and
    ``curve = Re(sum F_a conj F_b) / sqrt(sum|F_a|^2 sum|F_b|^2)`` per ring (NaN for a ring
    without power). Compare only aligned images: FRC is blind to per-ring scale, not to
    translation or phase.
    """
    x, y = _validate_pair(a, b, names=("a", "b"))
    m = _validate_mask(mask, x.shape)
    sq = _centred_square(m)
    n = sq[0].stop - sq[0].start
    if n < MIN_BOX:
        raise DataValidationError(
            f"mask: FRC needs a bounding box of at least {MIN_BOX}x{MIN_BOX} px, "
            f"found a {n}x{n} square"
        )
    win = _taper(m[sq], max(2.0, n / 8))
    fa = np.fft.fft2(x[sq] * win)
    fb = np.fft.fft2(y[sq] * win)
    k = np.fft.fftfreq(n) * n
    radius = np.rint(np.hypot(k[:, None], k[None, :])).astype(np.int64)
    rings = n // 2 + 1
    sel = radius < rings
    idx = radius[sel]
    num = np.bincount(idx, (fa * np.conj(fb)).real[sel], minlength=rings)
    pa = np.bincount(idx, (fa * np.conj(fa)).real[sel], minlength=rings)
    pb = np.bincount(idx, (fb * np.conj(fb)).real[sel], minlength=rings)
    den = np.sqrt(pa * pb)
    curve = np.full(rings, np.nan)
    ok = den > 0
    curve[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return np.arange(rings) / n, curve


def _smooth(curve: np.ndarray, width: int) -> np.ndarray:
    """NaN-aware running mean over ``width`` rings (partial windows at the ends)."""
    if width <= 1:
        return curve.copy()
    finite = np.isfinite(curve)
    kernel = np.ones(int(width))
    total = np.convolve(np.where(finite, curve, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(np.float64), kernel, mode="same")
    out = np.full(curve.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def frc50(a: Any, b: Any, *, mask: Any = None, threshold: float = 0.5, smooth: int = 3) -> float:
    """Frequency where the smoothed FRC first drops below ``threshold``, as a fraction of Nyquist.

    1.0 when it never drops. Linearly interpolated between rings. The resolution (full
    period) in pixels is ``2 / frc50``.
    """
    freq, curve = frc(a, b, mask=mask)
    smoothed = _smooth(curve, smooth)
    finite = np.flatnonzero(np.isfinite(smoothed))
    prev = None
    for i in finite:
        if smoothed[i] < threshold:
            if prev is None:
                return 0.0
            s0, s1 = smoothed[prev], smoothed[i]
            f = freq[prev] + (s0 - threshold) / (s0 - s1) * (freq[i] - freq[prev])
            return float(np.clip(f / 0.5, 0.0, 1.0))
        prev = i
    return 1.0


# ----------------------------------------------------------------------------- scores


def _masked_ssim(test: np.ndarray, ref: np.ndarray, mask: np.ndarray, data_range: float):
    """Mean SSIM map over the mask, skipping the border skimage's own mean skips."""
    _, smap = structural_similarity(ref, test, data_range=data_range, full=True)
    pad = (_SSIM_WIN - 1) // 2
    valid = np.zeros_like(mask)
    valid[pad:-pad, pad:-pad] = mask[pad:-pad, pad:-pad]
    if not valid.any():
        valid = mask
    return float(np.clip(np.mean(smap[valid]), -1.0, 1.0))


def _psnr(test: np.ndarray, ref: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """PSNR over the mask in dB, capped at :data:`PSNR_CAP_DB`."""
    mse = float(np.mean((test[mask] - ref[mask]) ** 2))
    if mse <= 0:
        return PSNR_CAP_DB
    return float(min(10 * math.log10(data_range**2 / mse), PSNR_CAP_DB))


def _data_range(values: np.ndarray, fallback: float) -> float:
    """Peak-to-peak of ``values``, or ``fallback`` for a (nearly) constant image."""
    rng = float(np.ptp(values))
    return rng if rng > 1e-9 * max(float(np.max(np.abs(values))), 1.0) else fallback


def _resolve_mask(mask, xcoords, ycoords, N, shape, probe=None) -> np.ndarray:
    """The scoring mask: given, from the scan positions (and the probe: only lit pixels),
    or the whole image."""
    if mask is not None:
        return _validate_mask(mask, shape)
    given = [v is not None for v in (xcoords, ycoords, N)]
    if any(given) and not all(given):
        raise DataValidationError(
            "xcoords, ycoords, N: a scan mask needs all three, found only "
            + ", ".join(n for n, g in zip(("xcoords", "ycoords", "N"), given, strict=True) if g)
        )
    if not all(given):
        return np.ones(shape, dtype=bool)
    return scan_scoring_mask(xcoords, ycoords, N, shape, probe)


def scan_scoring_mask(
    xcoords: Any, ycoords: Any, N: int, shape: tuple[int, int], probe: Any = None
) -> np.ndarray:
    """Where a scan's reconstruction is scored: :func:`scanned_region_mask`, and with
    ``probe`` only the pixels it lit (:func:`illuminated_mask`)."""
    scanned = scanned_region_mask(xcoords, ycoords, N, shape)
    if probe is None:
        return scanned
    scored = scanned & illuminated_mask(probe, xcoords, ycoords, shape)
    if not scored.any():
        warnings.warn(
            "the probe lights none of the scanned region's pixels; scoring the scanned region",
            stacklevel=3,
        )
        return scanned
    return scored


def evaluate(recon: Any, truth: Any, **kw: Any) -> dict[str, float]:
    """Score a complex reconstruction against the truth (plain floats, JSON-ready).

    Keyword arguments and scores: see :func:`evaluate_aligned`, which also returns the
    aligned reconstruction and the mask (for pictures, without aligning twice).
    """
    return evaluate_aligned(recon, truth, **kw)[0]


def evaluate_on_scan(recon: Any, scan: Any, **kw: Any) -> dict[str, float]:
    """:func:`evaluate` against a scan's own truth, scored where its positions and probe
    say it was measured (``scan``: a ``PtychoData``, or anything with ``object``,
    ``xcoords``, ``ycoords``, ``N`` and ``probe``)."""
    return evaluate(
        recon,
        scan.object,
        xcoords=scan.xcoords,
        ycoords=scan.ycoords,
        N=scan.N,
        probe=scan.probe,
        **kw,
    )


def evaluate_aligned(
    recon: Any,
    truth: Any,
    *,
    mask: Any = None,
    xcoords: Any = None,
    ycoords: Any = None,
    N: int | None = None,
    probe: Any = None,
    align_first: bool = True,
    register: bool = True,
    phase_ramp: bool = True,
    scale: bool = True,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """``(scores, aligned reconstruction, mask)`` of a complex reconstruction.

    The mask is ``mask``, else :func:`scanned_region_mask` of the scan positions (with
    ``probe``, only its pixels that the probe lit: :func:`illuminated_mask`), else the whole
    image. After :func:`align` (unless ``align_first=False``):

    - ``amp_ssim``/``amp_psnr``: amplitudes, ``data_range`` = truth amplitude range in mask.
    - ``phase_ssim``/``phase_psnr``: the truth's phase is taken relative to its own
      amplitude-weighted circular mean, and the reconstruction's phase is that plus the
      wrapped difference ``angle(aligned * conj(truth))``, so no 2*pi jump is ever scored;
      ``data_range`` = truth phase range in the mask (2*pi if constant).
    - SSIM maps are computed on the mask's bounding box and averaged over mask pixels; PSNR
      over mask pixels (capped at :data:`PSNR_CAP_DB`).
    - ``complex_rel_error`` = ``||aligned - truth|| / ||truth||`` over the mask.
    - ``frc50``: see :func:`frc50` (fraction of Nyquist).
    - Alignment: ``shift_x``, ``shift_y`` (px applied to recon), ``phase_offset``,
      ``phase_ramp_x``, ``phase_ramp_y`` (rad/px), ``amplitude_scale``.
    """
    r, t = _validate_pair(recon, truth)
    m = _resolve_mask(mask, xcoords, ycoords, N, t.shape, probe)
    box = _bbox(m)
    bh, bw = box[0].stop - box[0].start, box[1].stop - box[1].start
    if min(bh, bw) < MIN_BOX:
        raise DataValidationError(
            f"mask: scoring needs a bounding box of at least {MIN_BOX}x{MIN_BOX} px, "
            f"found {bh}x{bw}"
        )
    t_norm = float(np.sqrt(np.sum(np.abs(t[m]) ** 2)))
    if not t_norm > 0:
        raise DataValidationError("truth: expected a non-zero object inside the mask")
    if not np.any(r[m]):
        # Its phase would be scored as the truth's (no phase to compare), i.e. perfect.
        raise DataValidationError(
            "reconstruction: expected a non-zero object inside the scanned region, found zero "
            "everywhere there (nothing to score)"
        )
    if align_first:
        aligned, info = align(r, t, mask=m, register=register, phase_ramp=phase_ramp, scale=scale)
    else:
        aligned = r
        info = {"shift": [0.0, 0.0], "phase_offset": 0.0, "phase_ramp": [0.0] * 3}
        info["amplitude_scale"] = 1.0

    mb = m[box]
    amp_t = np.abs(t[box])
    amp_r = np.abs(aligned[box])
    amp_range = _data_range(amp_t[mb], fallback=max(float(amp_t[mb].max()), 1.0))

    mean_dir = np.angle(np.sum(t[m]))
    ph_t = np.angle(t[box] * np.exp(-1j * mean_dir))
    # Where the reconstruction is zero its phase is undefined: scored as the mean (0), not as
    # the truth's (angle(0) = 0 would add no difference).
    ph_r = np.where(aligned[box] != 0, ph_t + np.angle(aligned[box] * np.conj(t[box])), 0.0)
    ph_range = _data_range(ph_t[mb], fallback=2 * np.pi)

    rel_err = float(np.sqrt(np.sum(np.abs(aligned[m] - t[m]) ** 2)) / t_norm)
    scores = {
        "amp_ssim": _masked_ssim(amp_r, amp_t, mb, amp_range),
        "phase_ssim": _masked_ssim(ph_r, ph_t, mb, ph_range),
        "amp_psnr": _psnr(amp_r, amp_t, mb, amp_range),
        "phase_psnr": _psnr(ph_r, ph_t, mb, ph_range),
        "complex_rel_error": rel_err,
        "frc50": frc50(aligned, t, mask=m),
        "shift_x": float(info["shift"][1]),
        "shift_y": float(info["shift"][0]),
        "phase_offset": float(info["phase_offset"]),
        "phase_ramp_x": float(info["phase_ramp"][1]),
        "phase_ramp_y": float(info["phase_ramp"][2]),
        "amplitude_scale": float(info["amplitude_scale"]),
    }
    return scores, aligned, m
