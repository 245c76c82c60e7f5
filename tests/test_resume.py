"""Resuming and interrupting keep what was there: history, configs, checkpoints."""

from __future__ import annotations

import csv

import pytest

from ptychopinn.cli import train as train_cli
from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.npz import save_npz
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.errors import ConfigError, DataValidationError
from ptychopinn.workflows.execution import SaveOnInterrupt
from ptychopinn.workflows.train import train


def _quiet() -> ExecutionConfig:
    return ExecutionConfig(accelerator="cpu", logger="csv", enable_progress_bar=False)


def _epochs(path) -> list[int]:
    with open(path, newline="") as fh:
        return sorted({int(float(r["epoch"])) for r in csv.DictReader(fh) if r.get("epoch")})


def test_resume_keeps_the_metrics_history_and_refuses_fewer_epochs(tiny_scan, tmp_path):
    cfg = dict(model=ModelConfig(N=32), output_dir=str(tmp_path))
    train(tiny_scan, TrainingConfig(nepochs=2, **cfg), _quiet())
    metrics = tmp_path / "logs" / "metrics.csv"
    assert _epochs(metrics) == [0, 1]
    last = tmp_path / "checkpoints" / "last.ckpt"
    train(tiny_scan, TrainingConfig(nepochs=4, **cfg), _quiet(), resume_from=last)
    assert _epochs(metrics) == [0, 1, 2, 3]  # the first two epochs are still there
    before = metrics.read_text()
    with pytest.raises(ConfigError, match=r"last\.ckpt was saved at epoch 4.*more than 4"):
        train(tiny_scan, TrainingConfig(nepochs=3, **cfg), _quiet(), resume_from=last)
    assert metrics.read_text() == before
    assert not (tmp_path / "checkpoints" / "interrupted.ckpt").exists()


def test_cli_resume_with_too_few_epochs_rewrites_nothing(tiny_scan, tmp_path, capsys):
    scan = save_npz(tiny_scan, tmp_path / "scan.npz")
    out = tmp_path / "model"
    base = ["--train_data_file", str(scan), "--output_dir", str(out), "--N", "32"]
    quiet = ["--torch-accelerator", "cpu", "--torch-enable-progress-bar", "false"]
    assert train_cli.main([*base, *quiet, "--nepochs", "2"]) == 0
    resolved = (out / "resolved_config.yaml").read_text()
    code = train_cli.main(
        [*base, *quiet, "--nepochs", "1", "--resume_from", str(out / "checkpoints/last.ckpt")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "more than 2" in err and "Traceback" not in err
    assert (out / "resolved_config.yaml").read_text() == resolved


def test_cli_resume_with_other_model_settings_is_refused_and_rewrites_nothing(
    tiny_scan, tmp_path, capsys
):
    """Weights of a per-pattern network fit any gridsize: the settings themselves are checked."""
    scan = save_npz(tiny_scan, tmp_path / "scan.npz")
    out = tmp_path / "model"
    base = ["--train_data_file", str(scan), "--output_dir", str(out), "--N", "32"]
    quiet = ["--torch-accelerator", "cpu", "--torch-enable-progress-bar", "false"]
    assert train_cli.main([*base, *quiet, "--nepochs", "1", "--gridsize", "2"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    last = out / "checkpoints" / "last.ckpt"
    code = train_cli.main(
        [*base, *quiet, "--nepochs", "2", "--gridsize", "1", "--resume_from", str(last)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "other model settings" in err and "gridsize=2 (this run: 1)" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_validation_scan_of_another_size_is_refused_before_training(tiny_scan, tmp_path):
    other = simulate_dataset(N=64, object_size=96, step=8, nphotons=1e5, seed=1)
    cfg = TrainingConfig(model=ModelConfig(N=32), nepochs=1, output_dir=str(tmp_path))
    with pytest.raises(DataValidationError, match=r"validation patterns are 64x64.*N=32"):
        train(tiny_scan, cfg, _quiet(), test_data=other)
    assert not (tmp_path / "checkpoints").exists()


def test_an_error_writes_no_interrupted_checkpoint(tmp_path):
    class Trainer:
        saved = []

        def save_checkpoint(self, path):
            self.saved.append(path)

    callback = SaveOnInterrupt(tmp_path)
    trainer = Trainer()
    callback.on_exception(trainer, None, RuntimeError("out of memory"))
    assert trainer.saved == []
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert trainer.saved == [str(tmp_path / "interrupted.ckpt")]


def test_a_busy_output_dir_is_refused(tmp_path):
    import subprocess
    import sys
    import textwrap

    from ptychopinn.workflows.lock import output_dir_lock

    holder = textwrap.dedent(
        f"""
        import sys, time
        from ptychopinn.workflows.lock import output_dir_lock
        with output_dir_lock({str(tmp_path)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=r"in use by another run \(pid \d+\)"):
            with output_dir_lock(tmp_path):
                pass
    finally:
        proc.communicate("\n", timeout=30)
    with output_dir_lock(tmp_path):  # released when the holder ended
        pass


def test_retraining_sets_old_checkpoints_aside(tiny_scan, tmp_path):
    cfg = TrainingConfig(model=ModelConfig(N=32), nepochs=1, output_dir=str(tmp_path))
    train(tiny_scan, cfg, _quiet())
    (tmp_path / "checkpoints" / "best-epoch=099.ckpt").write_bytes(b"old")
    train(tiny_scan, cfg, _quiet())
    assert not (tmp_path / "checkpoints" / "best-epoch=099.ckpt").exists()
    assert (tmp_path / "checkpoints.previous" / "best-epoch=099.ckpt").exists()
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_stale_outputs_and_temporaries_are_removed(tiny_scan, tmp_path):
    import os
    from dataclasses import replace

    import numpy as np

    from ptychopinn.atomic import atomic_write, remove_stale_temporaries
    from ptychopinn.workflows.infer import Reconstruction
    from ptychopinn.workflows.outputs import remove_outputs, write_outputs

    rec = Reconstruction(
        object=np.ones((72, 72), np.complex64),
        weights=np.ones((72, 72), np.float32),
        xcoords=tiny_scan.xcoords,
        ycoords=tiny_scan.ycoords,
    )
    assert write_outputs(rec, tiny_scan, tmp_path) is not None
    assert (tmp_path / "metrics.json").exists()
    write_outputs(rec, replace(tiny_scan, object=None), tmp_path)  # a scan without truth
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "comparison_plot.png").exists()
    write_outputs(rec, tiny_scan, tmp_path, suffix="_refined")
    assert remove_outputs(tmp_path, suffix="_refined")
    assert not list(tmp_path.glob("*refined*"))
    # A killed writer's temporary (its process is gone) is cleaned by the next write.
    dead = tmp_path / ".metrics.999999999.abc.tmp.json"
    dead.write_text("{")
    young = tmp_path / f".metrics.{os.getpid()}.abc.tmp.json"
    young.write_text("{")
    atomic_write(tmp_path / "metrics.json", lambda t: t.write_text("{}"))
    assert not dead.exists() and young.exists()
    assert remove_stale_temporaries(tmp_path / "metrics.json") == []
