"""Progress of long work away from a terminal (log lines with time left) and pictures that
read at a glance (robust shared colour ranges, the unscanned region greyed out)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.plotting import UNSCANNED_GREY, robust_range, save_loss_curve, save_object_pictures
from ptychopinn.progress import Progress, duration
from ptychopinn.workflows.train import train


def test_duration_reads_at_a_glance():
    assert duration(42.4) == "42 s"
    assert duration(185) == "3 min 5 s"
    assert duration(3720) == "1 h 02 min"
    assert duration(-1) == "0 s"


def test_progress_logs_count_rate_and_time_left_off_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="ptychopinn.progress")
    bar = Progress(range(4), desc="reconstructing", unit="batch", terminal=False, interval=0.0)
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss="1.5")
    assert seen == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[0].startswith("reconstructing: 1/4 batch (25%)") and "left" in lines[0]
    assert "4/4 batch (100%)" in lines[-1] and "left" not in lines[-1]
    assert lines[-1].endswith("loss 1.5")


def test_progress_is_quiet_when_disabled_and_rate_limited(caplog):
    caplog.set_level(logging.INFO, logger="ptychopinn.progress")
    list(Progress(range(5), desc="x", unit="it", enabled=False, terminal=False))
    assert not caplog.records
    list(Progress(range(50), desc="x", unit="it", terminal=False, interval=3600.0))
    assert len(caplog.records) == 1  # only the final line within the interval


def test_training_logs_one_line_per_epoch_with_time_left(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ptychopinn.workflows.execution")
    scan = simulate_dataset(N=32, object_size=64, step=8, nphotons=1e5, seed=1)
    cfg = TrainingConfig(model=ModelConfig(N=32), nepochs=2, batch_size=8, output_dir=str(tmp_path))
    ex = ExecutionConfig(accelerator="cpu", enable_checkpointing=False, logger="csv")
    train(scan, cfg, ex)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(",")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "train_loss_epoch" in lines[0] and "per epoch" in lines[0] and "left" in lines[0]
    # the learning rate is logged too, and the loss curve draws it
    header = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "lr-Adam" in header
    assert save_loss_curve(tmp_path / "logs" / "metrics.csv", tmp_path / "loss.png")


def test_robust_range_ignores_outliers_and_the_unscanned_region():
    image = np.linspace(0.0, 1.0, 10_000).reshape(100, 100)
    image[0, 0] = 1e6  # one hot pixel
    mask = np.ones_like(image, dtype=bool)
    mask[50:, :] = False
    lo, hi = robust_range(image, mask)
    assert 0.0 <= lo < 0.02 and 0.48 < hi < 0.5


def test_unscanned_region_is_grey_in_the_object_pictures(tmp_path):
    import matplotlib.image as mpimg

    obj = np.exp(1j * np.linspace(-1, 1, 64 * 64).reshape(64, 64)).astype(np.complex64)
    mask = np.zeros((64, 64), dtype=bool)
    mask[:, :32] = True
    pictures = save_object_pictures(obj, tmp_path, mask=mask)
    grey = float(UNSCANNED_GREY)
    for path in pictures:
        rgb = mpimg.imread(path)[..., :3]
        is_grey = np.all(np.abs(rgb - grey) < 2 / 255, axis=-1)
        without = save_object_pictures(obj, tmp_path / "plain")
        rgb_plain = mpimg.imread(without[0 if "amplitude" in path.name else 1])[..., :3]
        plain_grey = np.all(np.abs(rgb_plain - grey) < 2 / 255, axis=-1)
        # about half the image area turns grey (the figure also has margins and a colour bar)
        assert is_grey.mean() > plain_grey.mean() + 0.15, path.name


@pytest.mark.parametrize("n", [40, 100, 256, 1000])
def test_scale_bar_length_is_round(n):
    from ptychopinn.plotting import _nice_length

    length = _nice_length(n)
    assert str(length)[0] in "125" and set(str(length)[1:]) <= {"0"}
    assert n / 12 < length <= n / 5
