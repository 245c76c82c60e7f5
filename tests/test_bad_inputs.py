"""Inputs that used to end in a traceback or a blow-up now give one clear message."""

from __future__ import annotations

import logging
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
