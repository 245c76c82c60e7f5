"""A scan measured with another probe than the model's: detected, and checked and refined
with its own probe (ptychopinn.refine.scan_probe)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychopinn.config import ModelConfig
from ptychopinn.data.simulate import make_probe, simulate_dataset
from ptychopinn.metrics import evaluate_on_scan
from ptychopinn.model.pinn import PtychoPINN, initial_intensity_scale, normalise_probe
from ptychopinn.refine import RefineSpec, refine_reconstruction
from ptychopinn.refine.scan_probe import PROBE_MATCH, probe_overlap, refinement_probe
from ptychopinn.workflows.infer import reconstruct

SCAN = dict(N=32, object_size=80, step=4.5, nphotons=1e6, seed=3)


def test_probe_overlap_ignores_shift_phase_and_scale_and_tells_other_probes():
    lens = make_probe(64, aberration=2.0)
    moved = np.roll(lens, (2, -3), axis=(0, 1)) * np.exp(0.7j) * 1e3
    assert probe_overlap(lens, moved) == pytest.approx(1.0, abs=1e-6)
    assert probe_overlap(lens, make_probe(64, kind="zoneplate")) < PROBE_MATCH
    assert probe_overlap(lens, make_probe(64, kind="disk")) < 0.5
    with pytest.raises(ValueError, match="shape"):
        probe_overlap(lens, lens[:32, :32])
    with pytest.raises(ValueError, match="energy"):
        probe_overlap(lens, np.zeros_like(lens))


@pytest.fixture(scope="module")
def model_and_scans():
    """An (untrained) model of a scan with an aberrated lens, that scan, and a scan of the same
    object measured with a Gaussian probe of another size."""
    own = simulate_dataset(**SCAN, probe_aberration=2.0)
    other = simulate_dataset(**SCAN, probe_kind="gaussian", probe_diameter=14)
    cfg = ModelConfig(N=own.N, gridsize=1)
    scale = initial_intensity_scale(own.diffraction, normalise_probe(own.probe, cfg.N))
    return PtychoPINN(cfg, own.probe, scale), own, other


def test_the_scan_probe_replaces_the_model_probe_only_when_it_differs(model_and_scans, caplog):
    model, own, other = model_and_scans
    with caplog.at_level("WARNING"):
        probe, overlap = refinement_probe(model, own)
    assert overlap > 0.999 and not caplog.records
    np.testing.assert_array_equal(probe, model.counts_probe().numpy())
    with caplog.at_level("WARNING"):
        probe, overlap = refinement_probe(model, other)
    assert overlap < PROBE_MATCH
    (warned,) = [r.getMessage() for r in caplog.records]
    assert warned.startswith(f"{other.source}: the scan's probe is not the one the model")
    assert probe_overlap(probe, other.probe) > 0.999
    # Normalised as the model's: the same energy in counts.
    assert np.linalg.norm(probe) == pytest.approx(np.linalg.norm(model.counts_probe()), rel=1e-4)


def test_refining_with_the_scans_own_probe_recovers_what_the_models_cannot(model_and_scans):
    model, _, other = model_and_scans
    start = reconstruct(model, other).object
    spec = RefineSpec("object", 30)
    with_model_probe = refine_reconstruction(model, other, start, spec)
    probe, _ = refinement_probe(model, other)
    with_scan_probe = refine_reconstruction(model, other, start, spec, probe=probe)
    worse = evaluate_on_scan(with_model_probe.object, other)
    better = evaluate_on_scan(with_scan_probe.object, other)
    assert better["amp_ssim"] > worse["amp_ssim"] + 0.1
    assert better["phase_ssim"] > 0.8


def test_inference_refines_a_scan_with_another_probe_by_itself(model_and_scans, tmp_path, capsys):
    from ptychopinn.bundle import save_model
    from ptychopinn.cli import inference as inference_cli
    from ptychopinn.config import TrainingConfig
    from ptychopinn.data.npz import save_npz

    model, _, other = model_and_scans
    save_model(model, tmp_path / "model", training_config=TrainingConfig(model=model.config))
    save_npz(other, tmp_path / "other.npz")
    argv = ["--model_path", str(tmp_path / "model"), "--test_data", str(tmp_path / "other.npz")]
    assert inference_cli.main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["probe_overlap"] < PROBE_MATCH
    assert summary["refine"]["because"] == "another probe"
    assert summary["refine"]["metrics"]["phase_ssim"] > 0.8
