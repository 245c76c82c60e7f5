"""Probes: a defocused lens (optionally with a zone plate's central stop), a disk or a
Gaussian, centred on the patch centre of the coordinate contract.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft

from ptychopinn.data.simulate._common import (
    _radius_grid,
    _smooth_step,
)
from ptychopinn.errors import ConfigError

PROBE_KINDS = ("lens", "zoneplate", "disk", "gaussian")
#: Zone-plate probe: central stop radius as a fraction of the pupil radius (typical optics 0.3-0.5).
ZONE_PLATE_STOP = 0.45


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
