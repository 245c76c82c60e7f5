"""ptycho_benchmark, the comparison table, the LSQML runner and the inference speed options."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ptychopinn.benchmarking import lsqml as lsqml_mod
from ptychopinn.benchmarking.lsqml import LSQMLError, LSQMLSettings, run_lsqml
from ptychopinn.benchmarking.table import (
    COLUMNS,
    MethodResult,
    comparison_rows,
    format_table,
)
from ptychopinn.cli import benchmark as bench_cli
from ptychopinn.config import ModelConfig
from ptychopinn.errors import ConfigError
from ptychopinn.metrics import evaluate
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.workflows.infer import channels_last, reconstruct

HAS_PTYCHI = importlib.util.find_spec("ptychi") is not None
TINY = ["--N", "32", "--object_size", "64", "--step", "6", "--nepochs", "1"]
TINY += [
    "--n_filters_scale",
    "1",
    "--batch_size",
    "8",
    "--threads",
    "2",
    "--refine_epochs",
    "1",
    "2",
]


# ----------------------------------------------------------------------------- table


def test_ratio_row_divides_pinn_by_lsqml():
    metrics_a = dict(amp_ssim=0.9, phase_ssim=0.8, amp_psnr=30.0, phase_psnr=20.0, frc50=0.5)
    metrics_b = dict(amp_ssim=0.6, phase_ssim=0.4, amp_psnr=20.0, phase_psnr=25.0, frc50=0.25)
    rows = comparison_rows(
        [MethodResult("PINN", 2.0, 1000, metrics_a), MethodResult("LSQML", 40.0, 1000, metrics_b)]
    )
    assert [r["method"] for r in rows] == ["PINN", "LSQML", "PINN/LSQML"]
    assert set(rows[0]) == set(COLUMNS)
    ratio = rows[-1]
    assert ratio["amp_ssim"] == pytest.approx(1.5)
    assert ratio["phase_psnr"] == pytest.approx(0.8)
    assert ratio["seconds"] == pytest.approx(0.05)
    assert rows[0]["patterns_per_s"] == pytest.approx(500.0)
    assert ratio["patterns_per_s"] == pytest.approx(20.0)  # the speed-up


def test_table_without_ground_truth_or_lsqml_prints_na():
    rows = comparison_rows([MethodResult("PINN", 0.5, 100, None)])
    assert len(rows) == 1  # no LSQML row, so no ratio row
    text = format_table(rows)
    header = text.splitlines()[0].split()
    assert header == list(COLUMNS)
    assert text.splitlines()[2].split() == ["PINN", *["n/a"] * 5, "0.50", "200.0"]


# ----------------------------------------------------------------------------- CLI


def test_cli_end_to_end_without_lsqml(tmp_path, capsys):
    out = tmp_path / "out"
    code = bench_cli.main([*TINY, "--lsqml", "off", "--output_dir", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split()
    assert header == list(COLUMNS)
    assert "PINN+training" in text and "LSQML" not in text
    summary = json.loads((out / "benchmark.json").read_text())
    pinn, trained = summary["rows"]
    assert pinn["method"] == "PINN" and 0 < pinn["amp_ssim"] <= 1
    assert trained["seconds"] == pytest.approx(pinn["seconds"] + summary["train_s"])
    assert pinn["patterns_per_s"] == pytest.approx(summary["positions"] / pinn["seconds"])
    assert (out / "wts.h5.zip").is_file() and (out / "pinn_object.npz").is_file()
    # Time to quality: the PINN alone, then PINN + object refinement per epoch count.
    curve = [(p["curve"], p["epochs"]) for p in summary["time_to_quality"]]
    assert curve[0] == ("pinn", 0) and ("object", 1) in curve and ("object", 2) in curve
    refined = [p for p in summary["time_to_quality"] if p["curve"] == "object"]
    assert all(p["seconds"] > pinn["seconds"] for p in refined)
    assert "Time to quality" in text and "lsqml skipped: --lsqml off" in text
    assert (out / "time_to_quality.png").is_file()
    # The saved model is reusable: no training the second time.
    code = bench_cli.main(
        [*TINY, "--lsqml", "off", "--model_path", str(out), "--output_dir", str(tmp_path / "b")]
    )
    assert code == 0
    assert "PINN+training" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--data", "missing.npz"], "missing.npz"),
        (["--nepochs", "0"], "--nepochs: expected an integer >= 1, found 0"),
        (["--model_path", "m", "--train_data", "t.npz"], "--model_path, --train_data"),
        (["--object_size", "16"], "--object_size: expected at least --N = 32"),
        (["--lsqml_epochs", "0", "--nepochs", "1"], "LSQMLSettings.epochs"),
    ],
)
def test_cli_bad_input_is_one_clear_message(tmp_path, capsys, argv, expected):
    code = bench_cli.main([*TINY, *argv, "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_cli_lsqml_on_without_ptychi_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_cli, "lsqml_unavailable_reason", lambda: "Pty-Chi is not installed")
    code = bench_cli.main([*TINY, "--lsqml", "on", "--output_dir", str(tmp_path)])
    assert code == 2
    assert "--lsqml on: Pty-Chi is not installed" in capsys.readouterr().err


def test_cli_lsqml_auto_skips_with_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_cli, "lsqml_unavailable_reason", lambda: "Pty-Chi is not installed")
    code = bench_cli.main([*TINY, "--output_dir", str(tmp_path)])
    assert code == 0
    assert "LSQML skipped: Pty-Chi is not installed" in capsys.readouterr().out
    summary = json.loads((tmp_path / "benchmark.json").read_text())
    assert summary["lsqml"] == {"ran": False, "skipped": "Pty-Chi is not installed"}


# ----------------------------------------------------------------------------- LSQML


def test_lsqml_settings_validate():
    with pytest.raises(ConfigError, match="noise_model"):
        LSQMLSettings(noise_model="laplace")
    with pytest.raises(ConfigError, match="batch_size"):
        LSQMLSettings(batch_size=0)


def test_torchvision_stand_in_blurs_like_a_gaussian():
    blur = lsqml_mod._gaussian_blur_module().GaussianBlur(kernel_size=(9, 9), sigma=(3, 3))
    flat = torch.full((1, 1, 20, 20), 2.0)
    assert torch.allclose(blur(flat), flat)
    delta = torch.zeros(30, 30)
    delta[15, 15] = 1.0
    out = blur(delta)
    assert out.shape == delta.shape
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(out, out.T) and float(out[15, 15]) == pytest.approx(float(out.max()))
    g = np.exp(-0.5 * (np.arange(9) - 4) ** 2 / 9)
    g /= g.sum()
    assert float(out[15, 15]) == pytest.approx(g[4] ** 2, rel=1e-5)


@pytest.mark.skipif(not HAS_PTYCHI, reason="Pty-Chi (optional extra) is not installed")
def test_lsqml_child_process_returns_object_on_the_canvas(tiny_scan):
    res = run_lsqml(tiny_scan, LSQMLSettings(epochs=2, batch_size=10, threads=2), timeout=120)
    assert res.object.shape == tiny_scan.object.shape
    assert res.object.dtype == np.complex64 and np.isfinite(res.object).all()
    assert res.probe.shape == tiny_scan.probe.shape
    # Fixed probe: returned in the project's units, unchanged.
    np.testing.assert_allclose(res.probe, tiny_scan.probe, rtol=1e-5, atol=1e-5)
    assert res.epochs == 2 and res.solve_s > 0 and res.wall_s >= res.solve_s


@pytest.mark.skipif(not HAS_PTYCHI, reason="Pty-Chi (optional extra) is not installed")
def test_lsqml_starts_from_the_given_object(tiny_scan):
    """Started from the truth, one epoch stays near it; from a flat object it cannot be."""
    settings = LSQMLSettings(epochs=1, batch_size=10, threads=2)
    started = run_lsqml(tiny_scan, settings, initial_object=tiny_scan.object, timeout=120)
    flat = run_lsqml(tiny_scan, settings, timeout=120)
    truth = tiny_scan.object
    inner = (slice(24, 48), slice(24, 48))
    err_started = np.abs(started.object - truth)[inner].mean()
    err_flat = np.abs(flat.object - truth)[inner].mean()
    assert err_started < 0.5 * err_flat
    with pytest.raises(LSQMLError, match="canvas"):
        run_lsqml(tiny_scan, settings, initial_object=truth[:-1])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PTYCHI, reason="Pty-Chi (optional extra) is not installed")
def test_lsqml_conventions_give_a_good_reconstruction():
    """Wrong position/FFT/scale conventions show up as a poor or rescaled object."""
    from ptychopinn.data.simulate import simulate_dataset

    d = simulate_dataset(seed=1, object_size=128, step=7.0, nphotons=1e6)
    res = run_lsqml(d, LSQMLSettings(epochs=50, batch_size=20))
    inner = np.zeros(d.object.shape, bool)
    inner[40:88, 40:88] = True
    m = evaluate(res.object, d.object, mask=inner)
    assert m["amp_ssim"] > 0.95 and m["phase_ssim"] > 0.9
    assert abs(m["shift_x"]) < 0.2 and abs(m["shift_y"]) < 0.2
    assert m["amplitude_scale"] == pytest.approx(1.0, abs=0.05)


# ----------------------------------------------------------------------------- inference speed


def _model(scan, gridsize):
    torch.manual_seed(0)
    return PtychoPINN(ModelConfig(N=32, gridsize=gridsize, n_filters_scale=1), scan.probe, 1.0)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_fast_paths_match_the_plain_path(tiny_scan, gridsize):
    model = _model(tiny_scan, gridsize)
    plain = reconstruct(
        model, tiny_scan, batch_size=7, channels_last_format=False, stitch_batch_size=1
    )
    fast = reconstruct(model, tiny_scan, batch_size=7)
    scale = np.abs(plain.object).max()
    assert np.abs(fast.object - plain.object).max() < 1e-4 * scale  # float32 conv order
    np.testing.assert_allclose(fast.weights, plain.weights, rtol=1e-4, atol=1e-5)


def test_channels_last_restores_the_callers_layout(tiny_scan):
    model = _model(tiny_scan, 1)
    conv = next(p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1)
    assert conv.is_contiguous()
    with channels_last(model.generator):
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert conv.is_contiguous()


def test_inference_streams_from_a_memory_map(tiny_scan, tmp_path):
    path = tmp_path / "amps.npy"
    np.save(path, tiny_scan.diffraction)
    from dataclasses import replace

    mapped = replace(tiny_scan, diffraction=np.load(path, mmap_mode="r"))
    model = _model(tiny_scan, 2)
    seen = []
    rec = reconstruct(model, mapped, batch_size=16, on_batch=seen.append)
    ref = reconstruct(model, tiny_scan, batch_size=16)
    assert seen == sorted(seen) and seen[-1] == tiny_scan.n_positions
    np.testing.assert_allclose(rec.object, ref.object, rtol=1e-6, atol=1e-7)


def test_inference_option_errors(tiny_scan):
    model = _model(tiny_scan, 1)
    with pytest.raises(ConfigError, match="weighting"):
        reconstruct(model, tiny_scan, weighting="gaussian")
    with pytest.raises(ConfigError, match="precision"):
        reconstruct(model, tiny_scan, precision="8")
    with pytest.raises(ConfigError, match="batch_size"):
        reconstruct(model, tiny_scan, batch_size=0)


def test_model_still_trains_after_inference(tiny_scan):
    model = _model(tiny_scan, 1)
    reconstruct(model, tiny_scan, batch_size=16)
    conv = next(p for p in model.parameters() if p.ndim == 4)
    assert not conv.is_inference() and conv.is_contiguous()
    model.train()
    loss = model.predict_patches(torch.rand(2, 1, 32, 32)).abs().sum()
    loss.backward()
    assert conv.grad is not None and torch.isfinite(conv.grad).all()


def _load_benchmark_script(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quality_diagnostic_removes_only_smooth_phase_error(tiny_scan):
    quality = _load_benchmark_script("quality")
    truth = tiny_scan.object
    yy, xx = np.mgrid[: truth.shape[0], : truth.shape[1]]
    centre = (truth.shape[0] - 1) / 2
    smooth = 0.6 * np.exp(-((xx - centre - 8) ** 2 + (yy - centre + 5) ** 2) / (2 * 15**2))
    fine = 0.4 * np.random.default_rng(0).standard_normal(truth.shape)

    def scores(error):
        recon = truth * np.exp(1j * error)
        plain = evaluate(recon, truth, xcoords=tiny_scan.xcoords, ycoords=tiny_scan.ycoords, N=32)
        return plain["phase_ssim"], quality.phase_ssim_without_smooth_error(recon, tiny_scan)

    plain, corrected = scores(smooth)
    assert plain < 0.7 and corrected > 0.9  # smooth error: removed by the diagnostic
    plain, corrected = scores(fine)
    assert corrected < 0.8 and abs(corrected - plain) < 0.1  # fine error: stays


def test_panel_scans_share_probe_and_scan_and_differ_in_object_and_dose():
    quality = _load_benchmark_script("quality")
    name = list(quality.PANEL)[0]
    (_, train), (_, unseen), (label, dose) = quality.panel_scans(0, name, object_size=96, step=10.0)
    assert label == "unseen at 1e+04"
    for scan in (unseen, dose):
        np.testing.assert_allclose(scan.coords, train.coords)
        scale = np.linalg.norm(scan.probe) / np.linalg.norm(train.probe)  # the dose scales it
        np.testing.assert_allclose(scan.probe, scale * train.probe, rtol=1e-4, atol=1e-6)
    assert not np.allclose(unseen.object, train.object)
    np.testing.assert_allclose(dose.object, unseen.object)
    assert dose.metadata["nphotons"] == 1e4 and unseen.metadata["nphotons"] == 1e6


def test_per_pattern_model_infers_one_pass_per_pattern(tiny_scan):
    """gridsize 2, one network pass per pattern: inference reads each pattern once (not once
    per group it belongs to) and needs no neighbours, so a scan of fewer positions than a
    group still reconstructs."""
    model = _model(tiny_scan, 2)
    assert model.config.per_pattern_network
    seen = []
    model.generator.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    rec = reconstruct(model, tiny_scan, batch_size=16, return_patches=True)
    assert sum(seen) == tiny_scan.n_positions
    # Each stitched patch is the network's prediction from its own pattern alone.
    amplitudes = torch.from_numpy(np.asarray(tiny_scan.diffraction, np.float32))[:, None]
    with torch.inference_mode():
        alone = model.predict_patches(amplitudes)[:, 0].numpy()
    np.testing.assert_allclose(rec.patches, alone, atol=1e-5 * np.abs(alone).max())
    few = reconstruct(model, tiny_scan.subset(np.arange(2)), batch_size=16)
    assert np.isfinite(few.object).all() and few.weights.max() > 0


def test_further_panel_training_scans_are_other_objects_of_the_same_scan():
    quality = _load_benchmark_script("quality")
    size = dict(object_size=96, step=10.0)
    name = "natural, lens, spiral"  # a family whose objects are named images, not seeds
    index = list(quality.PANEL).index(name)
    (_, train), (_, unseen), _ = quality.panel_scans(index, name, **size)
    more = quality.further_training_scans(index, name, 2, **size)
    assert len(more) == 2
    objects = [train.object, unseen.object, *(scan.object for scan in more)]
    for scan in more:
        np.testing.assert_allclose(scan.coords, train.coords)
        scale = np.linalg.norm(scan.probe) / np.linalg.norm(train.probe)  # the dose scales it
        np.testing.assert_allclose(scan.probe, scale * train.probe, rtol=1e-4, atol=1e-6)
        assert scan.metadata["nphotons"] == train.metadata["nphotons"]
    for i, a in enumerate(
        objects
    ):  # every training object differs from the others and the unseen one
        for b in objects[i + 1 :]:
            assert not np.allclose(a, b)
    with pytest.raises(SystemExit, match="training_scans"):
        quality.further_training_scans(index, name, len(quality.PANEL[name].more) + 1, **size)
