"""Scan positions: raster, spiral or random, jittered, inside the object."""

from __future__ import annotations

import logging
import math

import numpy as np

from ptychopinn.data.simulate._common import (
    SeedLike,
    _shape2,
)
from ptychopinn.errors import ConfigError

SCAN_KINDS = ("raster", "spiral", "random")
JITTER_KINDS = ("gaussian", "uniform")
#: Jittered positions outside the scannable area are drawn again this often, then clipped.
JITTER_REDRAWS = 20

log = logging.getLogger(__name__)

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


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
    clipped = np.zeros(x.size, dtype=bool)
    for base, a, b in ((x, lo[0], hi[0]), (y, lo[1], hi[1])):
        v = base + draw(base.size)
        for _ in range(JITTER_REDRAWS):
            bad = (v < a) | (v > b)
            if not bad.any():
                break
            v[bad] = base[bad] + draw(int(bad.sum()))
        clipped |= (v < a) | (v > b)
        out.append(np.clip(v, a, b))
    if clipped.any():
        log.warning(
            "jitter: %d of %d positions were still outside the scannable area (%.4g x %.4g px) "
            "after %d redraws of a %.4g px jitter and were moved to its edge; a jitter below "
            "the scan step keeps the scan's pattern",
            int(clipped.sum()),
            x.size,
            hi[0] - lo[0],
            hi[1] - lo[1],
            JITTER_REDRAWS,
            jitter,
        )
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
