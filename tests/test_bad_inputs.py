"""Inputs that used to end in a traceback or a blow-up now give one clear message."""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pytest

from ptychopinn.cli import inference as inference_cli
from ptychopinn.cli import simulate as simulate_cli
from ptychopinn.config import ExecutionConfig, ModelConfig
from ptychopinn.data.grouping import group_positions
from ptychopinn.errors import ConfigError
from ptychopinn.workflows.execution import _make_loggers


def _grid(n: int) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] * 5.0
    return np.stack([x.ravel(), y.ravel()], axis=1)


def test_n_groups_beyond_the_distinct_groups_is_capped(caplog):
    coords = _grid(6)  # 36 positions
    with caplog.at_level(logging.WARNING, logger="ptychopinn.data.grouping"):
        groups = group_positions(coords, 2, neighbor_count=4, n_groups=36_000, seed=0)
    assert groups.G == 36  # with K = C = 4 each anchor has exactly one group
    assert any("distinct groups" in r.getMessage() for r in caplog.records)
    more = group_positions(coords, 2, neighbor_count=6, n_groups=36_000, seed=0)
    assert more.G == 36 * 10  # C(5, 3) member sets per anchor
    assert group_positions(coords, 2, neighbor_count=6, n_groups=100, seed=0).G == 100


def test_n_filters_scale_has_an_upper_bound():
    with pytest.raises(ConfigError, match="n_filters_scale"):
        ModelConfig(n_filters_scale=1000)


def test_simulate_refuses_an_absurd_object_size(tmp_path, capsys):
    code = simulate_cli.main(["--output", str(tmp_path / "s.npz"), "--object_size", "100000"])
    err = capsys.readouterr().err
    assert code == 2 and "object_size" in err and "Traceback" not in err
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.skipif(shutil.which("tensorboard") is not None, reason="tensorboard is installed here")
def test_tensorboard_without_the_extra_names_it(tmp_path):
    pytest.importorskip("lightning")
    import importlib.util

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        pytest.skip("tensorboard is installed here")
    with pytest.raises(ConfigError, match=r"ptychopinn\[tensorboard\]"):
        _make_loggers(ExecutionConfig(logger="tensorboard"), tmp_path)
    assert ExecutionConfig(logger="tensorboard").logger == "tensorboard"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--n_subsample", "-3"], "n_subsample"),
        (["--subsample_seed", "-1"], "subsample_seed"),
        (["--n_images", "0"], "n_groups"),
    ],
)
def test_inference_subset_flags_are_checked(tmp_path, capsys, argv, expected):
    code = inference_cli.main(
        ["--model_path", str(tmp_path), "--test_data", str(tmp_path / "x.npz"), *argv]
    )
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err


# --- settings a user (or Ptychodus' GUI) can pick that used to crash, hang or mislead ---


def test_probe_smoothing_runs_in_float32_under_a_bfloat16_autocast():
    """Ptychodus' GaussianSmoothingSigma > 0 crashed every bf16 training (torch.complex
    refuses bfloat16); the blur is physics and stays in the input's precision."""
    import torch

    from ptychopinn.physics.forward import gaussian_blur

    rng = np.random.default_rng(0)
    probe = torch.from_numpy(rng.normal(size=(32, 32)) + 1j * rng.normal(size=(32, 32)))
    probe = probe.to(torch.complex64)
    plain = gaussian_blur(probe, 1.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = gaussian_blur(probe, 1.5)
    assert under_autocast.dtype == torch.complex64
    torch.testing.assert_close(under_autocast, plain)


def test_probe_smoothing_wider_than_a_quarter_patch_is_refused():
    assert ModelConfig(N=32, gaussian_smoothing_sigma=8).gaussian_smoothing_sigma == 8
    with pytest.raises(ConfigError, match="gaussian_smoothing_sigma.*N/4 = 8"):
        ModelConfig(N=32, gaussian_smoothing_sigma=1e6)


def test_float64_precision_is_refused_up_front():
    with pytest.raises(ConfigError, match="precision"):
        ExecutionConfig(precision="64-true")
    with pytest.raises(ConfigError, match="precision"):
        ExecutionConfig(precision="64")


def test_seeds_beyond_32_bits_are_refused_up_front(tmp_path, capsys):
    from ptychopinn.cli import train as train_cli
    from ptychopinn.config import TrainingConfig

    with pytest.raises(ConfigError, match="seed"):
        TrainingConfig(seed=2**32)
    code = train_cli.main(
        ["--train_data_file", str(tmp_path / "absent.npz"), "--seed", "5000000000"]
    )
    assert code == 2
    assert "seed" in capsys.readouterr().err


def test_supervised_training_refuses_a_uniform_ground_truth(tiny_scan):
    """Ptychodus' object guess is 1+0j everywhere: trained on it as labels, the network
    learned a flat object without a word."""
    import dataclasses

    from ptychopinn.config import TrainingConfig
    from ptychopinn.errors import DataValidationError
    from ptychopinn.workflows.datamodule import make_group_dataset

    flat = dataclasses.replace(
        tiny_scan, object=np.ones_like(tiny_scan.object), labels=None, source="flat.npz"
    )
    training = TrainingConfig(model=ModelConfig(N=32, model_type="supervised"))
    with pytest.raises(DataValidationError, match="flat.npz.*one value everywhere"):
        make_group_dataset(flat, training, seed=0, need_labels=True)
    make_group_dataset(tiny_scan, training, seed=0, need_labels=True)  # a real truth passes


def test_positions_that_miss_the_object_are_refused_even_where_overhangs_are_allowed(
    tiny_scan,
):
    """Ptychodus' front-ends allow a patch to overhang the object grid; a scan that misses
    it (positions in another unit or about another origin) gave an all-zero object."""
    from ptychopinn.data.npz import from_arrays
    from ptychopinn.errors import DataValidationError

    d = tiny_scan
    args = (d.diffraction, d.xcoords, d.ycoords, d.probe)
    with pytest.warns(UserWarning, match="outside"):  # one pixel of overhang: allowed
        from_arrays(d.diffraction, d.xcoords - d.xcoords.min() + 14.0, d.ycoords, d.probe,
                    object=d.object, allow_outside=True)  # fmt: skip
    with pytest.raises(DataValidationError, match="do not touch the object"):
        from_arrays(*args[:1], d.xcoords + 1000.0, *args[2:], object=d.object, allow_outside=True)


def test_legacy_grouping_refuses_groups_that_would_not_fit_in_memory(tiny_scan, monkeypatch):
    """NumSamples far above the positions at GridSize 2 asked for up to C(K-1, 3) groups
    per position: tens of GB for a large scan, at inference too."""
    from ptycho import raw_data

    raw = raw_data.RawData(tiny_scan)
    from ptychopinn import system_memory

    monkeypatch.setattr(system_memory, "available_memory_bytes", lambda: 2 * 2**20)  # 2 MiB
    with pytest.raises(ConfigError, match="nsamples.*GiB"):
        raw.generate_grouped_data(32, K=7, nsamples=10**6, gridsize=2)
    assert raw.generate_grouped_data(32, K=7, nsamples=1, gridsize=2)["nn_indices"].shape[1] == 4


def test_python_train_refuses_the_tensorflow_backend_it_does_not_run(tiny_scan, tmp_path):
    from ptychopinn.config import TrainingConfig
    from ptychopinn.workflows.train import train

    cfg = TrainingConfig(model=ModelConfig(N=32), nepochs=1, backend="tensorflow")
    with pytest.raises(ConfigError, match="tf_backend.train.train"):
        train(tiny_scan, cfg, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_reconstruct_checks_its_device_canvas_and_precision(tiny_scan):
    import torch

    from ptychopinn.model.pinn import PtychoPINN
    from ptychopinn.workflows.infer import reconstruct

    model = PtychoPINN(ModelConfig(N=32), tiny_scan.probe, 1.0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            reconstruct(model, tiny_scan, device="cuda")
    with pytest.raises(ConfigError, match="device"):
        reconstruct(model, tiny_scan, device="tpu")
    for canvas in [(10, 10), (10**6, 10**6), ("a", 3)]:
        with pytest.raises(ConfigError, match="canvas_shape"):
            reconstruct(model, tiny_scan, canvas_shape=canvas)
    # ExecutionConfig's spelling of a precision is understood too
    rec = reconstruct(model, tiny_scan, precision="32-true")
    assert np.isfinite(rec.object).all()


# --- inputs found by a command-line sweep that ended in tracebacks or misleading results ---


def _patched_zip(src, dst, *, method: int | None = None, encrypted: bool = False) -> None:
    """A copy of a zip whose central-directory entries claim another compression method or
    the encryption flag (what a foreign or damaged writer can leave)."""
    import struct

    raw = bytearray(open(src, "rb").read())
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        if encrypted:
            flags = struct.unpack_from("<H", raw, at + 8)[0]
            struct.pack_into("<H", raw, at + 8, flags | 1)
        if method is not None:
            struct.pack_into("<H", raw, at + 10, method)
        at = raw.find(b"PK\x01\x02", at + 4)
    open(dst, "wb").write(bytes(raw))


def test_corrupt_npz_members_and_unused_keys(tiny_scan, tmp_path):
    from ptychopinn.data.npz import load_npz, save_npz
    from ptychopinn.errors import DataValidationError

    good = save_npz(tiny_scan, tmp_path / "good.npz")
    for name, kw in [("deflate64", {"method": 9}), ("encrypted", {"encrypted": True})]:
        bad = tmp_path / f"{name}.npz"
        _patched_zip(good, bad, **kw)
        with pytest.raises(DataValidationError, match=f"{name}.npz"):
            load_npz(bad)
    # an unused member that could only be unpickled does not make the file unreadable
    arrays = dict(np.load(good))
    np.savez(tmp_path / "extra.npz", **arrays, notes=np.array([{"a": 1}], dtype=object))
    assert load_npz(tmp_path / "extra.npz").n_positions == tiny_scan.n_positions


def test_archives_with_corrupt_members_or_nan_weights_are_refused(tiny_scan, tmp_path):
    import torch

    from ptychopinn.bundle import _require_finite, load_model, save_model
    from ptychopinn.config import TrainingConfig
    from ptychopinn.errors import ArchiveError, TrainingDiverged
    from ptychopinn.model.pinn import PtychoPINN

    model = PtychoPINN(ModelConfig(N=32), tiny_scan.probe, 1.0)
    training = TrainingConfig(model=ModelConfig(N=32))
    archive = save_model(model, tmp_path / "ok", training_config=training)
    _patched_zip(archive, tmp_path / "enc.zip", encrypted=True)
    with pytest.raises(ArchiveError, match="enc.zip"):
        load_model(tmp_path / "enc.zip")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="not finite"):
        save_model(model, tmp_path / "nan", training_config=training)
    assert not (tmp_path / "nan" / "wts.h5.zip").exists()
    with pytest.raises(ArchiveError, match="NaN/Inf.*diverged"):
        _require_finite(model.state_dict(), tmp_path / "x.zip")


def test_a_diverging_training_stops_with_one_message_and_no_archive(tiny_scan, tmp_path, capsys):
    from ptychopinn.cli import train as train_cli
    from ptychopinn.data.npz import save_npz

    scan = save_npz(tiny_scan, tmp_path / "scan.npz")
    out = tmp_path / "model"
    code = train_cli.main(
        ["--train_data_file", str(scan), "--output_dir", str(out), "--nepochs", "2", "--N", "32",
         "--learning_rate", "1e4", "--torch-logger", "none"]
    )  # fmt: skip
    assert code == 2
    assert "diverged" in capsys.readouterr().err
    assert not (out / "wts.h5.zip").exists()


def test_divergence_stops_within_the_epoch(tiny_scan, tmp_path):
    from ptychopinn.config import TrainingConfig
    from ptychopinn.errors import TrainingDiverged
    from ptychopinn.workflows.train import train

    training = TrainingConfig(
        model=ModelConfig(N=32),
        nepochs=1,
        batch_size=1,
        learning_rate=1e4,
        output_dir=str(tmp_path),
    )
    steps_per_epoch = 2 * tiny_scan.n_positions  # two groups per position, one per step
    execution = ExecutionConfig(accelerator="cpu", logger="none", enable_progress_bar=False)
    with pytest.raises(TrainingDiverged, match=r"in epoch 1, step \d+:") as caught:
        train(tiny_scan, training, execution)
    step = int(re.search(r"step (\d+):", str(caught.value)).group(1))
    assert step < steps_per_epoch and step % 25 == 0
    assert not (tmp_path / "wts.h5.zip").exists()


def test_a_non_finite_reconstruction_is_not_written(tiny_scan, tmp_path):
    from ptychopinn.errors import DataValidationError
    from ptychopinn.workflows.infer import Reconstruction
    from ptychopinn.workflows.outputs import write_outputs

    obj = np.full((72, 72), np.nan, dtype=np.complex64)
    rec = Reconstruction(
        object=obj,
        weights=np.ones((72, 72), np.float32),
        xcoords=tiny_scan.xcoords,
        ycoords=tiny_scan.ycoords,
    )
    with pytest.raises(DataValidationError, match="NaN/Inf"):
        write_outputs(rec, tiny_scan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_unreadable_or_empty_reconstructions(tiny_scan, tmp_path, capsys):
    from ptychopinn.cli import evaluate as evaluate_cli
    from ptychopinn.data.npz import save_npz

    truth = save_npz(tiny_scan, tmp_path / "truth.npz")
    good = tmp_path / "rec.npz"
    np.savez(good, object=tiny_scan.object, xcoords=tiny_scan.xcoords, ycoords=tiny_scan.ycoords)
    np.save(tmp_path / "single.npy", tiny_scan.object)
    bad = {
        "npy.npz": (tmp_path / "single.npy").read_bytes(),
        "truncated.npz": good.read_bytes()[: good.stat().st_size // 2],
        "empty.npz": b"",
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "strings.npz", object=tiny_scan.object, xcoords=np.array(["a"] * 3))
    np.savez(tmp_path / "zero.npz", object=0 * tiny_scan.object)
    for name in [*bad, "strings.npz", "zero.npz"]:
        code = evaluate_cli.main(
            ["--reconstruction", str(tmp_path / name), "--ground_truth", str(truth)]
        )
        assert code == 2, name
        assert name in capsys.readouterr().err or name == "zero.npz"
    # a picture format matplotlib cannot write is refused before the metrics are written
    metrics = tmp_path / "m.json"
    code = evaluate_cli.main(
        ["--reconstruction", str(good), "--ground_truth", str(truth), "--output", str(metrics),
         "--comparison_plot", str(tmp_path / "plot.foo")]
    )  # fmt: skip
    assert code == 2 and not metrics.exists()


def test_command_line_checks_before_long_work(tiny_scan, tmp_path, capsys, caplog):
    from ptychopinn.atomic import atomic_write
    from ptychopinn.cli import train as train_cli
    from ptychopinn.data.npz import from_arrays, save_npz
    from ptychopinn.refine import parse_refine_spec

    scan = save_npz(tiny_scan, tmp_path / "scan.npz")
    assert simulate_cli.main(["--output", str(tmp_path / "s.npz"), "--nphotons", "1e40"]) == 2
    assert "nphotons" in capsys.readouterr().err
    out = tmp_path / "model"
    code = train_cli.main(
        ["--train_data_file", str(scan), "--output_dir", str(out), "--do_stitching", "--N", "32"]
    )
    assert code == 2 and "test_data_file" in capsys.readouterr().err
    assert not (out / "wts.h5.zip").exists()
    with pytest.raises(ConfigError, match="refine"):
        parse_refine_spec("object:")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        atomic_write(tmp_path, lambda tmp: tmp.write_text("x"))
    d = tiny_scan
    with caplog.at_level(logging.WARNING, logger="ptychopinn.data.npz"):
        from_arrays(d.diffraction, 0 * d.xcoords + 36, 0 * d.ycoords + 36, d.probe, object=d.object)
    assert any("all at one place" in r.getMessage() for r in caplog.records)


def test_resume_from_a_directory_says_what_to_give(tmp_path):
    from ptychopinn.errors import ArchiveError
    from ptychopinn.model.state_check import read_checkpoint

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ArchiveError, match=r"expected a checkpoint file.*directory.*last.ckpt"):
        read_checkpoint(tmp_path)


def test_a_run_refused_before_writing_leaves_no_directory(tiny_scan, tmp_path, capsys):
    from ptychopinn.cli import train as train_cli
    from ptychopinn.data.npz import save_npz

    scan = save_npz(tiny_scan, tmp_path / "scan.npz")
    out = tmp_path / "model"
    code = train_cli.main(
        ["--train_data_file", str(scan), "--output_dir", str(out), "--N", "32",
         "--resume_from", str(tmp_path / "absent.ckpt")]
    )  # fmt: skip
    assert code == 2 and "absent.ckpt" in capsys.readouterr().err
    assert not out.exists()


def test_an_archive_whose_manifest_and_configs_disagree_is_refused(tiny_scan, tmp_path):
    import json
    import zipfile

    from ptychopinn.bundle import load_model, save_model
    from ptychopinn.config import TrainingConfig
    from ptychopinn.errors import ArchiveError
    from ptychopinn.model.pinn import PtychoPINN

    model = PtychoPINN(ModelConfig(N=32), tiny_scan.probe, 1.0)
    archive = save_model(model, tmp_path, training_config=TrainingConfig(model=ModelConfig(N=32)))
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(altered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "manifest.json":
                data = json.dumps({**json.loads(data), "N": 64}).encode()
            dst.writestr(name, data)
    with pytest.raises(ArchiveError, match="N=64.*N=32"):
        load_model(altered)
    assert load_model(archive).model.config.N == 32


def test_python_entry_points_name_a_path_given_for_a_scan(tiny_scan, tmp_path):
    from ptychopinn.bundle import load_model, save_model
    from ptychopinn.config import TrainingConfig
    from ptychopinn.model.pinn import PtychoPINN
    from ptychopinn.workflows.infer import reconstruct
    from ptychopinn.workflows.train import train

    cfg = TrainingConfig(model=ModelConfig(N=32), nepochs=1)
    with pytest.raises(ConfigError, match="train_data: expected a loaded scan.*load_npz"):
        train("scan.npz", cfg, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="test_data: expected a loaded scan"):
        train(tiny_scan, cfg, test_data="other.npz", output_dir=tmp_path)
    model = PtychoPINN(ModelConfig(N=32), tiny_scan.probe, 1.0)
    with pytest.raises(ConfigError, match="data: expected a loaded scan"):
        reconstruct(model, "scan.npz")
    with pytest.raises(ConfigError, match="model: expected a trained model"):
        reconstruct("model_dir", tiny_scan)
    save_model(model, tmp_path / "m", training_config=cfg)
    rec = reconstruct(load_model(tmp_path / "m"), tiny_scan)  # the LoadedModel, given whole
    assert rec.object.shape == tiny_scan.canvas_shape()


def test_divergence_check_runs_once_per_optimiser_step(tiny_scan, tmp_path, monkeypatch):
    """With gradient accumulation several batches share one optimiser step; the weights are
    checked once for it, not once per batch."""
    from ptychopinn.config import TrainingConfig
    from ptychopinn.model.lightning_module import PINNLightningModule
    from ptychopinn.workflows.train import train

    checked: list[str] = []
    monkeypatch.setattr(PINNLightningModule, "_stop_if_diverged", lambda self, w: checked.append(w))
    training = TrainingConfig(
        model=ModelConfig(N=32), nepochs=1, batch_size=1, output_dir=str(tmp_path)
    )
    execution = ExecutionConfig(
        accelerator="cpu", logger="none", enable_progress_bar=False, accumulate_grad_batches=4
    )
    train(tiny_scan, training, execution)
    steps = [w for w in checked if "step" in w]
    assert steps and len(steps) == len(set(steps))  # step 0, 25, ...: each once
    assert checked[-1] == "epoch 1"


def test_a_diverged_refinement_is_named_as_such(tiny_scan, tmp_path):
    from ptychopinn.errors import DataValidationError
    from ptychopinn.workflows.infer import Reconstruction
    from ptychopinn.workflows.outputs import write_outputs

    rec = Reconstruction(
        object=np.full((72, 72), np.nan, dtype=np.complex64),
        weights=np.ones((72, 72), np.float32),
        xcoords=tiny_scan.xcoords,
        ycoords=tiny_scan.ycoords,
    )
    with pytest.raises(DataValidationError, match="the refinement diverged") as caught:
        write_outputs(rec, tiny_scan, tmp_path / "out", suffix="_refined")
    assert "network" not in str(caught.value)
    assert not (tmp_path / "out").exists()
