"""The learning-rate schedule: warm-up, decays, and its wiring into the optimiser."""

from __future__ import annotations

import math

import pytest

from ptychopinn.model import schedule


def _factors(scheduler: str, total: int = 100, per_epoch: float = 10.0, warmup: int = 5):
    return [
        schedule.lr_factor(
            s, scheduler=scheduler, total_steps=total, steps_per_epoch=per_epoch, warmup=warmup
        )
        for s in range(total)
    ]


def test_warmup_ramps_linearly_then_hands_over():
    f = _factors("none")
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(v == 1.0 for v in f[5:])


def test_cosine_starts_at_the_peak_after_warmup_and_ends_at_the_floor():
    f = _factors("cosine")
    assert f[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))
    assert f[-1] == pytest.approx(schedule.COSINE_MIN_RATIO, abs=1e-3)
    half = schedule.lr_factor(
        52, scheduler="cosine", total_steps=100, steps_per_epoch=10, warmup=5, min_ratio=0.1
    )
    assert half == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 47 / 95)))


def test_epoch_decays_are_closed_forms():
    f = _factors("exponential", warmup=0)
    assert f[0] == 1.0 and f[25] == pytest.approx(schedule.EXPONENTIAL_GAMMA**2)
    g = _factors("step", warmup=0)
    assert g[29] == 1.0 and g[30] == pytest.approx(schedule.STEP_GAMMA)
    with pytest.raises(ValueError, match="closed form"):
        schedule.lr_factor(0, scheduler="plateau", total_steps=1, steps_per_epoch=1, warmup=0)


def test_automatic_warmup_is_a_short_fraction_of_the_run():
    assert schedule.warmup_steps(5000, 100, None) == 100  # a fixed number of steps
    assert schedule.warmup_steps(300, 10, None) == 30  # at most a tenth of the run
    assert schedule.warmup_steps(1000, 10, 0) == 0
    assert schedule.warmup_steps(1000, 10, 2.5) == 25
    assert schedule.warmup_steps(10, 10, 5) == 10  # never longer than the run


def test_training_steps_the_schedule_per_batch(tiny_scan, tmp_path):
    """Training wires the warm-up and the cosine into Adam, stepped once per batch."""
    from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
    from ptychopinn.workflows.train import train

    cfg = TrainingConfig(
        model=ModelConfig(N=tiny_scan.N, gridsize=1),
        nepochs=2,
        batch_size=8,
        output_dir=str(tmp_path),
        warmup_epochs=1,
    )
    ex = ExecutionConfig(logger="none", enable_progress_bar=False, enable_checkpointing=False)
    result = train(tiny_scan, cfg, ex)
    per_epoch = math.ceil(tiny_scan.n_positions / 8)
    sched = result.trainer.lr_scheduler_configs[0]
    assert sched.interval == "step"
    factor = sched.scheduler.lr_lambdas[0]
    assert factor(0) == pytest.approx(1 / per_epoch)
    assert factor(per_epoch - 1) == pytest.approx(1.0)
    assert sched.scheduler.last_epoch == 2 * per_epoch  # stepped after every batch
    lr_now = result.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr_now == pytest.approx(cfg.learning_rate * cfg.min_lr_ratio, rel=1e-6)
