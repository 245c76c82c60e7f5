"""Which illumination checks and refines a scan: the model's, or the scan's own.

A network is trained with one probe; a scan measured with another one (another beamline
setting, focus or optics) is outside what it has seen, and its reconstruction is poor. The
refinement and the data-fit check must then use the scan's own probe: refining with the
model's makes the result worse (docs/quality.md, "A scan with another probe").
"""

from __future__ import annotations

import logging

import numpy as np

#: Probe overlap below which a scan's probe counts as another probe than the model's. The
#: simulator's default lens against its zone plate without aberration: 0.90 (the network's
#: reconstruction then fails: 0.51 / 0.38 amplitude / phase SSIM); the same probe: 1.
PROBE_MATCH = 0.95


def probe_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two probes are, 0 to 1: the largest normalised cross-correlation over all
    whole-pixel shifts, so a probe moved in its window or given a constant phase still
    matches itself (1); the probes' overall scales do not matter."""
    a = np.asarray(a, dtype=np.complex128)
    b = np.asarray(b, dtype=np.complex128)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"probes: expected two arrays of one 2-D shape, found {a.shape} and {b.shape}"
        )
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if not np.isfinite(norm) or norm <= 0:
        raise ValueError("probe has zero or non-finite energy")
    correlation = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b)))
    return float(min(1.0, np.abs(correlation).max() / norm))


def refinement_probe(model, data, log: logging.Logger | None = None) -> tuple[np.ndarray, float]:
    """The probe in counts (N, N) to check and refine ``data`` (a ``PtychoData``) with, and
    its overlap with the model's: the model's own probe when the scan's matches it (at least
    :data:`PROBE_MATCH`), else the scan's probe normalised as the model's was, with a
    warning that the network was trained for another probe."""
    model_probe = model.probe.detach().cpu().numpy()
    overlap = probe_overlap(model_probe, data.probe)
    if overlap >= PROBE_MATCH:
        return model.counts_probe().cpu().numpy(), overlap
    (log or logging.getLogger(__name__)).warning(
        "%s: the scan's probe is not the one the model was trained with (overlap %.2f, below "
        "%.2f), so the network's reconstruction is likely poor; the data-fit check and any "
        "refinement use the scan's own probe; for the network, train on a scan measured "
        "with this probe",
        data.source,
        overlap,
        PROBE_MATCH,
    )
    return model.counts_probe(data.probe).cpu().numpy(), overlap
