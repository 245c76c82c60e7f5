"""Dose invariance: the network input follows the scan's dose, not the training set's."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

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


# ------------------------------------------------------------------ dose augmentation


def test_thinning_poisson_counts_gives_poisson_counts_of_the_lower_dose():
    torch = pytest.importorskip("torch")
    from ptychopinn.physics.thinning import thin_counts

    torch.manual_seed(0)
    counts = torch.poisson(torch.full((200_000,), 20.0))
    thinned = thin_counts(counts, torch.tensor(0.3))
    assert torch.equal(thinned, thinned.round()) and bool((thinned <= counts).all())
    # Poisson of mean 6: mean and variance both 6 (a rescaled copy would have variance 1.8).
    assert float(thinned.mean()) == pytest.approx(6.0, rel=0.01)
    assert float(thinned.var()) == pytest.approx(6.0, rel=0.03)
    assert torch.equal(thin_counts(counts, torch.tensor(1.0)), counts)


def test_dose_fractions_are_log_uniform_for_the_chosen_share():
    torch = pytest.importorskip("torch")
    from ptychopinn.physics.thinning import draw_dose_fractions

    torch.manual_seed(0)
    assert torch.equal(draw_dose_fractions(100, 0.0, 0.01), torch.ones(100))
    f = draw_dose_fractions(20_000, 0.5, 0.01)
    thinned = f[f < 1]
    assert len(thinned) / len(f) == pytest.approx(0.5, abs=0.02)
    assert float(thinned.min()) >= 0.01
    # Log-uniform on [0.01, 1]: half below 0.1, a quarter below 0.0316.
    assert float((thinned < 0.1).float().mean()) == pytest.approx(0.5, abs=0.03)
    assert float((thinned < 10**-1.5).float().mean()) == pytest.approx(0.25, abs=0.03)


def test_counts_are_told_from_other_amplitudes():
    from ptychopinn.physics.thinning import look_like_counts

    rng = np.random.default_rng(0)
    counts = rng.poisson([3.0, 300.0, 3e4, 3e7], size=(50, 4)).astype(np.float64)
    assert look_like_counts(np.sqrt(counts).astype(np.float32))
    assert not look_like_counts(np.sqrt(counts).astype(np.float32) * 0.37)


def test_dose_augmentation_changes_training_batches_only():
    torch = pytest.importorskip("torch")
    from ptychopinn.model.lightning_module import PINNLightningModule

    data = simulate_dataset(nphotons=1e5, **SCAN)
    torch.manual_seed(0)
    amplitudes = torch.from_numpy(np.asarray(data.diffraction[:8], np.float32)).view(2, 4, 32, 32)
    batch = {"amplitudes": amplitudes, "offsets": torch.zeros(2, 4, 2)}
    losses = {}
    for share in (0.0, 1.0):
        cfg = TrainingConfig(
            model=ModelConfig(N=32, gridsize=2), dose_augmentation=share, output_dir="unused"
        )
        torch.manual_seed(1)
        module = PINNLightningModule.from_configs(cfg, probe=data.probe, intensity_scale=0.05)
        module.eval()
        with torch.no_grad():
            losses[share, "eval"] = float(module.compute_losses(batch)["loss"])
        module.train()
        with torch.no_grad():
            for index in (0, 0, 1):
                thinning = module.thinning_generator(index, amplitudes.device)
                loss = float(module.compute_losses(batch, thinning)["loss"])
                losses.setdefault((share, "train", index), []).append(loss)
    assert losses[1.0, "eval"] == losses[0.0, "eval"]  # validation sees the measured data
    first, again = losses[1.0, "train", 0]
    assert np.isfinite(first) and first != pytest.approx(losses[0.0, "train", 0][0], rel=1e-3)
    # Seeded by the batch's place in the run (what makes a resume exact), not by a stream.
    assert again == first and losses[1.0, "train", 1][0] != first


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_dose_augmentation_options_are_checked(bad):
    from ptychopinn.errors import ConfigError

    with pytest.raises(ConfigError, match="dose_augmentation"):
        TrainingConfig(dose_augmentation=bad)
    with pytest.raises(ConfigError, match="dose_augmentation_min"):
        TrainingConfig(dose_augmentation=0.5, dose_augmentation_min=0.0)


def test_amplitudes_that_are_not_counts_turn_dose_augmentation_off(tmp_path, caplog):
    from ptychopinn.workflows.train import check_dose_augmentation

    data = simulate_dataset(nphotons=1e5, **SCAN)
    cfg = TrainingConfig(model=ModelConfig(N=32), dose_augmentation=0.5, output_dir=str(tmp_path))
    assert check_dose_augmentation(cfg, [data]) is cfg
    scaled = dataclasses.replace(data, diffraction=np.asarray(data.diffraction) * 0.37)
    with caplog.at_level(logging.WARNING):
        off = check_dose_augmentation(cfg, [scaled])
    assert off.dose_augmentation == 0.0 and off.model == cfg.model
    assert "not whole photon counts" in caplog.text


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_a_probe_of_any_overall_scale_normalises(scale):
    """Float32 sums of squares would underflow/overflow; the normalised probe is the same."""
    probe = np.exp(1j * np.linspace(0, 3, 32 * 32)).reshape(32, 32) * np.hanning(32)
    ref = normalise_probe(probe.astype(np.complex64), 32)
    scaled = normalise_probe((probe * scale).astype(np.complex64), 32)
    np.testing.assert_allclose(scaled.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    assert torch.linalg.vector_norm(scaled).item() == pytest.approx(16.0, rel=1e-5)
