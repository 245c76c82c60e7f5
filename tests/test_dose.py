"""Dose invariance: the network input follows the scan's dose, not the training set's."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ptychopinn.bundle import load_model, save_model
from ptychopinn.config import ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.metrics import evaluate
from ptychopinn.model.pinn import (
    PtychoPINN,
    initial_intensity_scale,
    mean_pattern_energy,
    normalise_probe,
)
from ptychopinn.workflows.infer import reconstruct

SCAN = dict(N=32, object_size=80, step=5, seed=4)


def _model(data) -> PtychoPINN:
    cfg = ModelConfig(N=data.N, gridsize=1, n_filters_scale=1)
    scale = initial_intensity_scale(data.diffraction, normalise_probe(data.probe, cfg.N))
    return PtychoPINN(
        cfg, data.probe, scale, reference_energy=mean_pattern_energy(data.diffraction)
    ).eval()


@pytest.fixture(scope="module")
def noiseless():
    return {d: simulate_dataset(nphotons=d, poisson=False, **SCAN) for d in (1e6, 1e4, 1e8)}


def test_noiseless_scan_at_another_dose_gives_the_same_object(noiseless):
    model = _model(noiseless[1e6])
    ref = reconstruct(model, noiseless[1e6]).object
    peak = np.abs(ref).max()
    for dose in (1e4, 1e8):
        other = reconstruct(model, noiseless[dose]).object
        assert np.abs(other - ref).max() < 1e-5 * peak, dose
    # Without the adaptation even an untrained network's output (flat phase: only the
    # amplitude responds) moves over 10x more.
    unadapted = reconstruct(model, noiseless[1e4], adapt_dose=False).object
    assert np.abs(unadapted - ref).max() > 1e-4 * peak


def test_noisy_scan_at_a_tenth_of_the_dose_stays_close():
    high = simulate_dataset(nphotons=1e6, **SCAN)
    low = simulate_dataset(nphotons=1e5, **SCAN)
    model = _model(high)
    ref = reconstruct(model, high).object
    score = evaluate(
        reconstruct(model, low).object, ref, xcoords=low.xcoords, ycoords=low.ycoords, N=low.N
    )
    assert score["amp_ssim"] > 0.9 and score["phase_ssim"] > 0.9, score


def test_a_far_dose_is_warned_about(noiseless, caplog):
    model = _model(noiseless[1e6])
    with caplog.at_level(logging.WARNING, logger="ptychopinn.workflows.infer"):
        reconstruct(model, noiseless[1e4])
    assert any(
        "training data" in r.getMessage() and "0.01x" in r.getMessage() for r in caplog.records
    )


def test_reference_energy_survives_the_archive(noiseless, tmp_path):
    model = _model(noiseless[1e6])
    save_model(model, tmp_path, training_config=TrainingConfig(model=model.config))
    loaded = load_model(tmp_path).model
    assert loaded.reference_energy == pytest.approx(model.reference_energy)
    assert loaded.reference_energy == pytest.approx(1e6, rel=0.05)  # counts per pattern
