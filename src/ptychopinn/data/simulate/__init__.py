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

The modules: :mod:`.objects` (patterns and objects), :mod:`.probes`, :mod:`.scans`,
:mod:`.diffraction` (patches and far field, independent of :mod:`ptychopinn.physics` on
purpose) and :mod:`.dataset` (:class:`SimulationConfig`, :func:`simulate_dataset`).
"""

from ptychopinn.data.simulate.dataset import MAX_OBJECT_PIXELS, SimulationConfig, simulate_dataset
from ptychopinn.data.simulate.diffraction import (
    extract_patches_exact,
    far_field,
    far_field_intensity,
    simulate_diffraction,
)
from ptychopinn.data.simulate.objects import (
    PATTERN_KINDS,
    SKIMAGE_IMAGES,
    SYNTHETIC_PATTERNS,
    band_limit_filter,
    make_object,
    make_pattern,
)
from ptychopinn.data.simulate.probes import PROBE_KINDS, ZONE_PLATE_STOP, make_probe
from ptychopinn.data.simulate.scans import JITTER_KINDS, SCAN_KINDS, make_scan

__all__ = [
    "JITTER_KINDS",
    "MAX_OBJECT_PIXELS",
    "SYNTHETIC_PATTERNS",
    "ZONE_PLATE_STOP",
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
