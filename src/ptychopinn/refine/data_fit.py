"""How well an object explains the measured patterns beyond photon noise: a check of a
reconstruction that needs no ground truth.

The network's reconstruction of a scan unlike its training data can be poor, and at a
beamline nothing says so. The forward model does: ``|F(P · O)|`` of the stitched object
should reproduce the measured amplitudes up to photon noise. What it leaves unexplained
beyond that noise, as a fraction of the measured signal, is about zero for a reconstruction
that fits, whatever the dose, and says when a reconstruction is worth refining
(``--refine object``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ptychopinn.data.types import evenly_spaced_index
from ptychopinn.physics.forward import far_field
from ptychopinn.physics.shifts import fourier_shift

from .object import _check_inputs, _fit_scale, _Geometry

#: Pattern pixels the estimate reads at most (1024 patterns of 64x64; whole patterns,
#: evenly spaced through the scan): memory and time stay bounded for any scan size and N.
MAX_PIXELS = 1024 * 64 * 64
#: Above this unexplained fraction a reconstruction is reported as worth refining. Measured
#: on network reconstructions of unseen objects (docs/quality.md, "Probes outside the
#: panel"): lens and zone-plate probes 0.2-0.9 %, flat-phase disk and Gaussian probes
#: (amplitude SSIM 0.10 and 0.49) 2.0-2.6 %; after 50 epochs of refinement all below 0.1 %.
POOR_FIT = 0.015


def unexplained_signal(
    obj: np.ndarray,
    probe: np.ndarray,
    amplitudes,
    coords: np.ndarray,
    *,
    seed: int = 0,
) -> float:
    """Fraction of the measured signal that ``obj`` leaves unexplained beyond photon noise.

    ``probe`` is in the units of the counts (as :func:`~ptychopinn.refine.refine_object`
    takes it; the object's overall scale is fitted first), ``amplitudes`` (M, N, N) the
    measured square-root counts and ``coords`` (M, 2) the ``[x, y]`` probe centres; at most
    :data:`MAX_PIXELS` worth of patterns are read. The mean squared amplitude residual,
    less the one a Poisson draw of the prediction itself leaves (the noise floor), over the
    mean measured counts; 0 at or below the noise.
    """
    obj = np.asarray(obj)
    probe = np.asarray(probe, dtype=np.complex64)
    coords = np.asarray(coords, dtype=np.float64)
    _check_inputs(obj, probe, amplitudes, coords)
    index = evenly_spaced_index(coords.shape[0], max(1, MAX_PIXELS // probe.shape[0] ** 2))
    coords = coords[index]
    measured = torch.as_tensor(np.asarray(amplitudes[index], dtype=np.float32))
    geometry = _Geometry(coords, probe.shape[0], obj.shape, "cpu")
    canvas = geometry.embed(obj, "cpu")
    probes = fourier_shift(torch.as_tensor(probe), geometry.frac)
    scale = _fit_scale(canvas, probes, geometry.index, measured)
    with torch.no_grad():
        predicted = far_field(probes * canvas.reshape(-1)[geometry.index] * scale).abs()
        residual = float((predicted - measured).square().mean())
        generator = torch.Generator().manual_seed(seed)
        draw = torch.poisson(predicted.double().square(), generator=generator).sqrt()
        noise = float((predicted.double() - draw).square().mean())
        signal = float(measured.double().square().mean())
    if not signal > 0:
        return 0.0
    return max(0.0, residual - noise) / signal


def report_data_fit(
    probe: np.ndarray,
    data,
    obj: np.ndarray,
    which: str,
    remedy: str,
    log: logging.Logger | None = None,
) -> float:
    """:func:`unexplained_signal` of ``obj`` for ``data`` (a ``PtychoData``) lit by
    ``probe`` in counts, logged as info, or as a warning naming ``remedy`` above
    :data:`POOR_FIT`."""
    fraction = unexplained_signal(obj, probe, data.diffraction, data.coords)
    log = log or logging.getLogger(__name__)
    said = (
        "%s: %s reconstruction leaves %.2f %% of the measured signal unexplained beyond "
        "photon noise"
    )
    if fraction > POOR_FIT:
        log.warning(
            said + ", more than %.1f %%: it is likely poor (a probe or object unlike the "
            "training data's?); %s",
            data.source,
            which,
            100 * fraction,
            100 * POOR_FIT,
            remedy,
        )
    else:
        log.info(said, data.source, which, 100 * fraction)
    return fraction
