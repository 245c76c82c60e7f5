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
    monkeypatch.setattr(raw_data, "available_memory_bytes", lambda: 2 * 2**20)  # 2 MiB
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
