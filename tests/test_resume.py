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
