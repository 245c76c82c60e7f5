"""How far a probe leaves one diffraction pattern unable to tell the object from its twin.

With a probe that equals its own twin, ``P(r) = e^{ic} conj(P(-r))`` about its centre (a
flat-phase, centrosymmetric spot: a focused disk or Gaussian), the object ``O(r)`` and its
twin ``conj(O(-r))`` give the same far-field intensity. To first order a single pattern
then does not see the object's amplitude part that is odd about the probe centre, nor the
phase part that is even: half of the patch. Only the overlap between positions tells them
apart, so a network that reads one pattern per pass cannot learn them (docs/quality.md,
"Probes outside the panel"). A defocused or aberrated probe (ptychography's usual
illumination) breaks the symmetry.
"""

from __future__ import annotations

import numpy as np

#: Twin symmetry above which a training scan gets a warning. Flat disk and Gaussian probes
#: give 0.99 and more, the simulator's defocused lens and zone plate 0.52-0.59 (a random
#: complex field about 0.5).
TWIN_SYMMETRIC = 0.9


def twin_symmetry(probe: np.ndarray) -> float:
    """Share of the probe's far-field energy that is real once the probe is centred at its
    intensity centroid and a constant phase is removed: 1 for a probe equal to its twin
    (its far field is then real), about 0.5 for a strongly curved or aberrated one."""
    p = np.asarray(probe, dtype=np.complex128)
    if p.ndim != 2:
        raise ValueError(f"probe: expected a 2-D array, found shape {p.shape}")
    intensity = np.abs(p) ** 2
    total = intensity.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("probe has zero or non-finite energy")
    rows, cols = np.indices(p.shape)
    cy, cx = (intensity * rows).sum() / total, (intensity * cols).sum() / total
    ky = np.fft.fftfreq(p.shape[0])[:, None]
    kx = np.fft.fftfreq(p.shape[1])[None, :]
    # The transform of the probe moved to the origin (sub-pixel: a linear phase).
    far = np.fft.fft2(p) * np.exp(2j * np.pi * (ky * cy + kx * cx))
    # The constant phase that makes it as real as it can be: half the angle of sum(far^2).
    real = (far * np.exp(-0.5j * np.angle(np.sum(far**2)))).real
    return float(np.sum(real**2) / np.sum(np.abs(far) ** 2))
