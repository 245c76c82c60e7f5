"""Physics refinement after the network: forward-model consistency, loss and quality gains,
the ``--refine`` flags and their bad values, stopping, and the time-to-quality benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychopinn.cli import inference as inference_cli
from ptychopinn.config import ModelConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.errors import ConfigError, DataValidationError
from ptychopinn.metrics import evaluate
from ptychopinn.model.pinn import PtychoPINN, initial_intensity_scale, normalise_probe
from ptychopinn.refine import (
    FinetuneSettings,
    ObjectRefineSettings,
    RefineSpec,
    parse_refine_spec,
    refine_object,
    refine_reconstruction,
)
from ptychopinn.refine.object import _likelihood
from ptychopinn.workflows.infer import reconstruct


def _score(obj, data) -> tuple[float, float]:
    m = evaluate(obj, data.object, xcoords=data.xcoords, ycoords=data.ycoords, N=data.N)
    return m["amp_ssim"], m["phase_ssim"]


@pytest.fixture(scope="module")
def noiseless_scan():
    """Sub-pixel (jittered) positions, no photon noise: the truth must fit exactly."""
    return simulate_dataset(N=32, object_size=80, step=5, nphotons=1e6, poisson=False, seed=2)


def test_truth_is_a_fixed_point(noiseless_scan):
    """Probe shifted by the sub-pixel rest + integer crop reproduces the simulator's counts."""
    d = noiseless_scan
    res = refine_object(
        d.object,
        d.probe,
        d.diffraction,
        d.coords,
        ObjectRefineSettings(epochs=2, momentum=0.0),
        fit_scale=False,
    )
    counts_scale = float(np.mean(d.diffraction**2))
    assert res.losses[0] / (d.N * d.N) < 1e-3 * counts_scale  # deviance per pixel ~ 0
    err = np.abs(res.object - d.object)[20:60, 20:60].max() / np.abs(d.object).max()
    assert err < 0.02


def test_refinement_lowers_the_loss_and_raises_ssim(small_scan):
    d = small_scan
    flat = np.ones_like(d.object)
    res = refine_object(flat, d.probe, d.diffraction, d.coords, ObjectRefineSettings(epochs=15))
    assert res.losses[-1] < 0.2 * res.losses[0]
    amp0, phase0 = _score(flat * np.exp(0.01j), d)
    amp, phase = _score(res.object, d)
    assert amp > 0.8 and phase > 0.7, (amp, phase)
    assert amp > amp0 + 0.3


def test_poisson_and_amplitude_losses_vanish_at_the_data():
    import torch

    counts = torch.tensor([[0.0, 4.0], [9.0, 100.0]])
    for model in ("poisson", "amplitude"):
        assert float(_likelihood(counts, counts.sqrt(), model)) == pytest.approx(0, abs=1e-3)
        assert float(_likelihood(counts * 1.5, counts.sqrt(), model)) > 0


@pytest.fixture(scope="module")
def untrained_model(small_scan):
    cfg = ModelConfig(N=small_scan.N, gridsize=1, n_filters_scale=1)
    probe = normalise_probe(small_scan.probe, cfg.N)
    return PtychoPINN(cfg, small_scan.probe, initial_intensity_scale(small_scan.diffraction, probe))


def test_object_refinement_improves_a_network_reconstruction(small_scan, untrained_model):
    """Even a poor network start (an untrained model) is lifted by the physics."""
    d = small_scan
    rec = reconstruct(untrained_model, d)
    refined = refine_reconstruction(untrained_model, d, rec.object, RefineSpec("object", 15))
    assert refined.method == "object" and refined.epochs == 15 and not refined.stopped
    amp0, phase0 = _score(rec.object, d)
    amp, phase = _score(refined.object, d)
    assert amp > amp0 + 0.2 and phase > phase0 + 0.2, (amp0, phase0, amp, phase)
    assert refined.object.shape == rec.object.shape and refined.object.dtype == np.complex64


def test_finetune_lowers_the_training_loss(tiny_scan):
    cfg = ModelConfig(N=tiny_scan.N, gridsize=1, n_filters_scale=1)
    probe = normalise_probe(tiny_scan.probe, cfg.N)
    model = PtychoPINN(cfg, tiny_scan.probe, initial_intensity_scale(tiny_scan.diffraction, probe))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = reconstruct(model, tiny_scan)
    refined = refine_reconstruction(
        model,
        tiny_scan,
        rec.object,
        RefineSpec("finetune", 4),
        finetune_settings=FinetuneSettings(batch_size=8, learning_rate=1e-3),
    )
    assert refined.losses[-1] < refined.losses[0]
    for k, v in model.state_dict().items():  # the caller's model is left untouched
        assert (v == before[k]).all(), k


def test_ctrl_c_returns_what_was_refined(small_scan):
    d = small_scan

    def stop_after_two(epoch, get_object, seconds):
        if epoch == 2:
            raise KeyboardInterrupt

    res = refine_object(
        np.ones_like(d.object),
        d.probe,
        d.diffraction,
        d.coords,
        ObjectRefineSettings(epochs=10),
        on_epoch=stop_after_two,
    )
    assert res.stopped and res.epochs_done == 2 and np.isfinite(res.object).all()


def test_probe_refinement_recovers_a_scaled_probe(small_scan):
    """A probe 30% too bright and a flat object: refining both still explains the data."""
    d = small_scan
    res = refine_object(
        np.ones_like(d.object),
        d.probe * 1.3,
        d.diffraction,
        d.coords,
        ObjectRefineSettings(epochs=15, refine_probe=True),
        fit_scale=False,
    )
    fixed = refine_object(
        np.ones_like(d.object),
        d.probe * 1.3,
        d.diffraction,
        d.coords,
        ObjectRefineSettings(epochs=15),
        fit_scale=False,
    )
    assert res.losses[-1] < 0.2 * res.losses[0]
    assert not np.allclose(res.probe, d.probe * 1.3)
    assert np.isfinite(res.probe).all() and res.losses[-1] <= fixed.losses[-1] * 1.5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("object:20", RefineSpec("object", 20)),
        ("auto", RefineSpec("object", 50, automatic=True)),
        ("OBJECT", RefineSpec("object", 50)),
        ("finetune:3", RefineSpec("finetune", 3)),
        ("lsqml:10", RefineSpec("lsqml", 10)),
        ("none", None),
        (None, None),
    ],
)
def test_refine_spec_parses(text, expected):
    assert parse_refine_spec(text) == expected


@pytest.mark.parametrize("text", ["object:0", "object:-3", "object:ten", "ePIE:5", "object:1e9"])
def test_bad_refine_spec_is_one_message(text):
    with pytest.raises(ConfigError, match="--refine"):
        parse_refine_spec(text)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(step=float("nan")), "step"),
        (dict(step=0.0), "step"),
        (dict(noise_model="gauss"), "noise_model"),
        (dict(momentum=1.5), "momentum"),
    ],
)
def test_bad_refine_settings(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ObjectRefineSettings(**kwargs)


def test_bad_refine_inputs(small_scan):
    d = small_scan
    with pytest.raises(DataValidationError, match="probe"):
        refine_object(d.object, d.probe[:-1], d.diffraction, d.coords)
    with pytest.raises(DataValidationError, match="NaN"):
        refine_object(d.object * np.nan, d.probe, d.diffraction, d.coords)
    with pytest.raises(DataValidationError, match="coordinates"):
        refine_object(d.object, d.probe, d.diffraction, d.coords[:-1])


def test_positions_outside_the_canvas_are_refined_on_a_padded_canvas(small_scan):
    d = small_scan
    canvas = np.ones((60, 60), np.complex64)  # smaller than the scan's extent
    res = refine_object(canvas, d.probe, d.diffraction, d.coords, ObjectRefineSettings(epochs=1))
    assert res.object.shape == (60, 60) and np.isfinite(res.object).all()


# --- command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan_and_model(tmp_path_factory, small_scan, untrained_model):
    from ptychopinn.bundle import save_model
    from ptychopinn.config import TrainingConfig
    from ptychopinn.data.npz import save_npz

    d = tmp_path_factory.mktemp("refine")
    save_npz(small_scan, d / "scan.npz")
    save_model(
        untrained_model, d / "model", training_config=TrainingConfig(model=untrained_model.config)
    )
    return d


def _infer(d, out, *argv) -> int:
    """ptycho_inference on the module's scan and model; argparse's usage errors give 2 too."""
    args = ["--model_path", str(d / "model"), "--test_data", str(d / "scan.npz")]
    try:
        return inference_cli.main([*args, "--output_dir", str(out), *argv])
    except SystemExit as exc:
        return int(exc.code)


def test_inference_refine_writes_both_results(scan_and_model, capsys):
    d = scan_and_model
    out = d / "out"
    code = _infer(d, out, "--refine", "object:8", "--torch-accelerator", "cpu")
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    for name in (
        "reconstruction.npz",
        "reconstruction_refined.npz",
        "refined_amplitude.png",
        "refined_phase.png",
        "metrics_refined.json",
        "comparison_plot_refined.png",
        "metrics.json",
    ):
        assert (out / name).exists(), name
    assert summary["refine"]["epochs"] == 8
    assert summary["refine"]["metrics"]["amp_ssim"] > summary["metrics"]["amp_ssim"]
    assert not list(out.glob("*.tmp*"))


def test_inference_refines_by_itself_a_poor_fit_or_a_twin_symmetric_probe(
    scan_and_model, tmp_path, capsys, monkeypatch
):
    """--refine auto (the default): an untrained network's result misfits the data, so
    object:50 runs and says why; below the threshold nothing runs and an earlier refined
    result is removed (it would pass for this run's); a twin-symmetric probe refines."""
    from ptychopinn.physics import twin
    from ptychopinn.refine import data_fit

    out = tmp_path / "o"
    assert _infer(scan_and_model, out, "--torch-accelerator", "cpu") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unexplained_signal"] > data_fit.POOR_FIT
    assert summary["refine"]["automatic"] is True
    assert summary["refine"]["because"] == "unexplained signal"
    assert (summary["refine"]["method"], summary["refine"]["epochs"]) == ("object", 50)
    assert summary["refine"]["unexplained_signal"] < summary["unexplained_signal"]
    assert summary["refine"]["metrics"]["amp_ssim"] > summary["metrics"]["amp_ssim"]
    assert (out / "reconstruction_refined.npz").exists()

    monkeypatch.setattr(data_fit, "POOR_FIT", 1.0)  # every result now counts as fitting
    assert _infer(scan_and_model, out) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "refine" not in summary
    assert not (out / "reconstruction_refined.npz").exists()
    assert (out / "reconstruction.npz").exists()

    # A probe equal to its twin is refined however well the network's result fits.
    monkeypatch.setattr(twin, "TWIN_SYMMETRIC", 0.0)
    assert _infer(scan_and_model, out, "--refine", "auto") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["refine"]["because"] == "twin-symmetric probe"
    assert (out / "reconstruction_refined.npz").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--refine", "object:0"], "--refine"),
        (["--refine", "magic"], "--refine"),
        (["--refine", "object", "--refine_batch_size", "0"], "batch_size"),
        (["--refine", "object", "--refine_step", "-1"], "step"),
        (["--refine", "object", "--refine_probe", "maybe"], "refine_probe"),
    ],
)
def test_inference_bad_refine_flags(scan_and_model, tmp_path, capsys, argv, expected):
    code = _infer(scan_and_model, tmp_path / "o", *argv)
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "o" / "reconstruction.npz").exists()


def test_refine_settings_without_object_refinement_are_named_as_ignored(
    scan_and_model, tmp_path, caplog
):
    with caplog.at_level("WARNING", logger="ptychopinn.cli.inference"):
        code = _infer(
            scan_and_model,
            tmp_path / "o",
            "--refine",
            "none",
            "--refine_momentum",
            "0",
            "--refine_probe",
        )
    assert code == 0 and (tmp_path / "o" / "reconstruction.npz").exists()
    (warned,) = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    flags, reason = warned.split(": ", 1)
    assert sorted(flags.split(", ")) == ["--refine_momentum", "--refine_probe"]
    assert reason == "ignored; these settings apply to --refine object:K, found --refine none"
    assert not (tmp_path / "o" / "reconstruction_refined.npz").exists()


def test_time_to_quality_points(small_scan, untrained_model, tmp_path):
    from ptychopinn.benchmarking.time_to_quality import format_curve, plot_curve, time_to_quality

    d = small_scan
    rec = reconstruct(untrained_model, d)
    points = time_to_quality(
        untrained_model,
        d,
        rec.object,
        0.5,
        lambda o: evaluate(o, d.object),
        curves=("object", "finetune"),
        epochs=(1, 3),
        finetune_max_epochs=1,
    )
    names = [(p.curve, p.epochs) for p in points]
    assert names == [("pinn", 0), ("object", 1), ("object", 3), ("finetune", 1)]
    assert all(p.seconds >= 0.5 for p in points)
    assert points[2].metrics["amp_ssim"] > points[0].metrics["amp_ssim"]
    assert "object" in format_curve(points)
    assert plot_curve(points, tmp_path / "ttq.png").stat().st_size > 1000


@pytest.mark.parametrize("nphotons", [1e4, 1e6, 1e9])
def test_the_truth_explains_its_patterns_at_any_dose_and_a_wrong_object_does_not(nphotons):
    """The data-fit check needs no ground truth: the true object leaves nothing beyond photon
    noise, whatever the dose; a flat object (the phase missing) leaves a large share."""
    from ptychopinn.refine.data_fit import POOR_FIT, unexplained_signal

    d = simulate_dataset(N=32, object_size=80, step=5, nphotons=nphotons, seed=2)
    truth = unexplained_signal(d.object, d.probe, d.diffraction, d.coords)
    flat = np.full_like(d.object, np.abs(d.object).mean())
    wrong = unexplained_signal(flat, d.probe, d.diffraction, d.coords)
    assert 0 <= truth < 0.1 * POOR_FIT
    assert wrong > POOR_FIT


def test_inference_reports_how_much_signal_each_result_leaves_unexplained(
    scan_and_model, tmp_path, capsys
):
    code = _infer(scan_and_model, tmp_path / "out", "--refine", "object:20")
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    network, refined = summary["unexplained_signal"], summary["refine"]["unexplained_signal"]
    assert 0 <= refined < network
