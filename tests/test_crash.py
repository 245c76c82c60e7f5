"""A training killed mid-epoch (SIGKILL: no handler runs) resumes to the same model."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.workflows.train import train

SCAN = dict(N=32, object_size=72, step=6, nphotons=1e5, seed=5)
EPOCHS = 4


def _configs(out) -> tuple[TrainingConfig, ExecutionConfig]:
    training = TrainingConfig(
        model=ModelConfig(N=32), nepochs=EPOCHS, batch_size=8, output_dir=str(out), seed=3
    )
    return training, ExecutionConfig(accelerator="cpu", logger="csv", enable_progress_bar=False)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    import test_crash as t
    import ptychopinn.workflows.execution as ex
    import ptychopinn.workflows.train as wt

    class Kill(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    build = ex.build_trainer
    wt.build_trainer = lambda *a, **k: build(*a, extra_callbacks=[Kill()], **k)
    training, execution = t._configs({out!r})
    wt.train(t.simulate_dataset(**t.SCAN), training, execution)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    script = _CHILD.format(tests=os.path.dirname(__file__), out=str(killed))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    last = killed / "checkpoints" / "last.ckpt"
    assert last.is_file(), sorted(p.name for p in killed.rglob("*"))
    assert torch.load(last, weights_only=True)["epoch"] == 1  # epochs 0 and 1 complete

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scan = simulate_dataset(**SCAN)
        resumed = train(scan, *_configs(killed), resume_from=last)
        straight = train(scan, *_configs(tmp_path / "straight"))
    finally:
        torch.set_num_threads(threads)
    assert resumed.trainer.current_epoch == straight.trainer.current_epoch == EPOCHS
    a, b = resumed.module.state_dict(), straight.module.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    # The metrics history holds every epoch once, with the uninterrupted run's losses.
    history, reference = _epoch_losses(killed), _epoch_losses(tmp_path / "straight")
    assert sorted(history) == sorted(reference) == list(range(EPOCHS))
    for epoch, loss in reference.items():
        assert history[epoch] == pytest.approx(loss, rel=1e-4), epoch


def _epoch_losses(out) -> dict[int, float]:
    with open(out / "logs" / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train_loss_epoch")]
    losses = {int(float(r["epoch"])): float(r["train_loss_epoch"]) for r in rows}
    assert len(losses) == len(rows), "an epoch is logged twice"
    return losses
