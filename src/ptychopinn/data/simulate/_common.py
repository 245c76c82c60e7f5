"""Helpers shared by the simulator modules: seeds, shapes and smooth steps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ptychopinn.errors import ConfigError

SeedLike = int | np.random.SeedSequence | np.random.Generator | None

_FFT_WORKERS = -1


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


def _entropy(seed: SeedLike) -> int | None | np.random.SeedSequence:
    """Turn any seed into something ``SeedSequence`` accepts (Generators give fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, np.random.SeedSequence):
        return seed.generate_state(4)  # type: ignore[return-value]
    return seed
