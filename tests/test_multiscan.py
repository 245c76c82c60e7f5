"""Training on several scans: each keeps its own probe and positions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from ptychopinn.cli import simulate as simulate_cli
from ptychopinn.cli import train as train_cli
from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig, join_paths
from ptychopinn.data.npz import load_npz
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.errors import ConfigError, DataValidationError
from ptychopinn.model.pinn import PtychoPINN, normalise_probe
from ptychopinn.workflows.train import train

SIM = ["--N", "32", "--object_size", "72", "--step", "6", "--nphotons", "1e5"]
FAST = dict(logger="none", enable_progress_bar=False, enable_checkpointing=False)


def test_simulate_writes_a_corpus_with_one_probe(tmp_path, capsys):
    assert simulate_cli.main(["-o", str(tmp_path / "c.npz"), *SIM, "--n_objects", "3",
                              "--picture", "false"]) == 0  # fmt: skip
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["object_seed"] for x in lines] == [0, 1, 2]  # seed (default 0) + k
    scans = [load_npz(tmp_path / f"c_{k:03d}.npz") for k in range(3)]
    # One probe: the same up to the scale that sets each scan's photon count.
    unit = [s.probe / np.linalg.norm(s.probe) for s in scans]
    assert all(np.allclose(u, unit[0], atol=1e-6) for u in unit)
    assert all(np.array_equal(s.xcoords, scans[0].xcoords) for s in scans)
    assert not np.allclose(scans[0].object, scans[1].object)
    assert simulate_cli.main(["-o", str(tmp_path / "x.npz"), "--n_objects", "0"]) == 2


def test_per_group_probes_give_each_scan_its_own_physics():
    """The forward model with a per-group probe equals a model built with that probe."""
    a = simulate_dataset(N=32, object_size=72, step=6, seed=1)
    b = simulate_dataset(N=32, object_size=72, step=6, seed=2, probe_defocus=40.0)
    cfg = ModelConfig(N=32, gridsize=2)
    model_a = PtychoPINN(cfg, a.probe, 1.0)
    model_b = PtychoPINN(cfg, b.probe, 1.0)
    model_b.load_state_dict({**model_a.state_dict(), "probe_ri": model_b.probe_ri})
    x = torch.rand(3, 4, 32, 32)
    offsets = torch.randn(3, 4, 2) * 3
    probe_b = normalise_probe(b.probe, 32).expand(3, 32, 32)
    model_a.eval(), model_b.eval()
    with torch.no_grad():
        mixed = model_a(x, offsets, probe_b)
        own = model_b(x, offsets)
        plain = model_a(x, offsets)
    torch.testing.assert_close(mixed.amplitude, own.amplitude)
    torch.testing.assert_close(mixed.object_patches, own.object_patches)
    assert not torch.allclose(plain.amplitude, own.amplitude)


def test_train_on_two_scans_uses_both(tmp_path):
    a = simulate_dataset(N=32, object_size=72, step=6, nphotons=1e5, seed=1)
    b = simulate_dataset(N=32, object_size=72, step=6, nphotons=1e5, seed=2, probe_defocus=40.0)
    cfg = TrainingConfig(model=ModelConfig(N=32, gridsize=2), nepochs=1, output_dir=str(tmp_path))
    result = train([a, b], cfg, ExecutionConfig(**FAST))
    # the default groups per position, counted on each scan's own positions
    assert len(result.groups.indices) == cfg.groups_per_position * (a.n_positions + b.n_positions)
    assert result.groups.indices.max() >= a.n_positions  # b's groups count after a's
    dataset = result.trainer.train_dataloader.dataset
    first, last = dataset[0], dataset[len(dataset) - 1]
    torch.testing.assert_close(first["probe"], normalise_probe(a.probe, 32))
    torch.testing.assert_close(last["probe"], normalise_probe(b.probe, 32))
    torch.testing.assert_close(result.module.model.probe, normalise_probe(a.probe, 32))


def test_several_scans_bad_combinations(tmp_path):
    a = simulate_dataset(N=32, object_size=72, step=6, seed=1)
    small = simulate_dataset(N=16, object_size=48, step=4, seed=1)
    small.source = "small.npz"
    cfg = TrainingConfig(model=ModelConfig(N=32), nepochs=1, output_dir=str(tmp_path))
    with pytest.raises(DataValidationError, match="small.npz.*same pattern size"):
        train([a, small], cfg, ExecutionConfig(**FAST))
    learned = TrainingConfig(model=ModelConfig(N=32), nepochs=1, probe_trainable=True,
                             output_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigError, match="probe_trainable"):
        train([a, a], learned, ExecutionConfig(**FAST))


def test_cli_trains_on_several_files(tmp_path):
    for k, seed in enumerate((1, 2)):
        assert simulate_cli.main(["-o", str(tmp_path / f"s{k}.npz"), *SIM, "--seed", str(seed),
                                  "--picture", "false"]) == 0  # fmt: skip
    files = [str(tmp_path / "s0.npz"), str(tmp_path / "s1.npz")]
    out = tmp_path / "model"
    argv = ["--train_data_file", *files, "--N", "32", "--nepochs", "1", "--output_dir",
            str(out), "--torch-accelerator", "cpu",
            "--torch-enable-progress-bar", "false"]  # fmt: skip
    assert train_cli.main(argv) == 0
    resolved = yaml.safe_load((out / "resolved_config.yaml").read_text())
    assert resolved["training"]["train_data_file"] == join_paths(files)
    assert TrainingConfig(train_data_file=files).train_data_files == files


def test_simulate_refuses_a_corpus_of_one_image(tmp_path, capsys, caplog):
    """Images ignore the object seed: a corpus of them would repeat one object."""
    out = tmp_path / "n.npz"
    args = ["-o", str(out), *SIM, "--n_objects", "2", "--picture", "false"]
    images = ["--object_amplitude", "astronaut", "--object_phase", "camera"]
    assert simulate_cli.main([*args, *images]) == 2
    err = capsys.readouterr().err
    assert "object_amplitude 'astronaut'" in err and "same object" in err
    assert not list(tmp_path.iterdir())  # nothing written
    # One image and one drawn kind: written, with a warning naming the fixed one.
    assert simulate_cli.main([*args, "--object_phase", "camera", "--band_limit", "none"]) == 0
    assert "object_phase 'camera' is the same in every scan" in caplog.text
    scans = [load_npz(tmp_path / f"n_{k:03d}.npz") for k in range(2)]
    assert not np.allclose(np.abs(scans[0].object), np.abs(scans[1].object))
    np.testing.assert_allclose(np.angle(scans[0].object), np.angle(scans[1].object), atol=1e-6)
