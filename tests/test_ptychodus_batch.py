"""End-to-end: Ptychodus 1.7.0 batch mode trains and reconstructs with this package.

Builds a Ptychodus input directory from a simulated scan with Ptychodus' own writers
(``diffraction.h5``, ``product.h5``, its ``train_data.npz`` export, ``settings.ini``), runs
``ptychodus -b train`` and ``ptychodus -b reconstruct`` for the ``PtychoPINN`` and
``PtychoPINN-Torch`` front-ends (which import ``ptycho`` / ``ptycho_torch`` in a child process),
and scores the reconstructed object in the output ``product.h5`` against the ground truth.

Needs ``pip install 'ptychopinn[ptychodus]'``; skipped otherwise. Each batch run takes
tens of seconds on two CPU cores (N=32, ~170 positions, a few epochs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.metrics import evaluate

pytest.importorskip(
    "ptychodus", reason="ptychodus is not installed (pip install 'ptychopinn[ptychodus]')"
)

from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.geometry import PixelGeometry
from ptychodus.api.io import (
    load_product,
    save_diffraction_data,
    save_product,
    save_ptychopinn_training_data,
)
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductMetadata
from ptychodus.api.reconstruct import ReconstructInput

pytestmark = pytest.mark.ptychodus

N = 32
ENERGY_EV = 10_000.0
DETECTOR_DISTANCE_M = 2.0
DETECTOR_PIXEL_M = 75e-6
WAVELENGTH_M = 1.239841984e-6 / ENERGY_EV
OBJECT_PIXEL_M = WAVELENGTH_M * DETECTOR_DISTANCE_M / (N * DETECTOR_PIXEL_M)
SCAN = dict(N=N, object_size=80, step=4.0, jitter=0.3, nphotons=1e6)
RUN_TIMEOUT_S = 600

SETTINGS = {
    "ptychopinn_pinn": """
[Processing]
Algorithm = ptychopinn_pinn

[PtychoPINNModel]
GridSize = 1
NumFiltersScale = 1

[PtychoPINNTraining]
NumEpochs = 6
BatchSize = 4

[PtychoPINNInference]
NumNearestNeighbors = 7
NumSamples = 1
""",
    "ptychopinn-torch_unsupervised": """
[Processing]
Algorithm = ptychopinn-torch_unsupervised

[PtychoPINNTorchData]
num_channels = 1
grid_size_x = 1
grid_size_y = 1

[PtychoPINNTorchModel]
num_filters_scale = 1

[PtychoPINNTorchTraining]
epochs = 6
batch_size = 4
num_dataloader_workers = 0

[PtychoPINNTorchInference]
batch_size = 64
""",
}


def _product(data, obj: np.ndarray, probe_modes: np.ndarray) -> Product:
    """A Ptychodus product: positions in metres about the object centre (0, 0)."""
    h, w = obj.shape
    points = [
        ProbePosition(i, (x - (w - 1) / 2) * OBJECT_PIXEL_M, (y - (h - 1) / 2) * OBJECT_PIXEL_M)
        for i, (x, y) in enumerate(zip(data.xcoords, data.ycoords, strict=True))
    ]
    pixels = PixelGeometry(width_m=OBJECT_PIXEL_M, height_m=OBJECT_PIXEL_M)
    metadata = ProductMetadata(
        name="simulated",
        comments="ptychopinn test",
        detector_distance_m=DETECTOR_DISTANCE_M,
        photon_energy_eV=ENERGY_EV,
        probe_photon_count=float(SCAN["nphotons"]),
        exposure_time_s=1.0,
        mass_attenuation_m2_per_kg=0.0,
        tomography_angle_deg=0.0,
    )
    return Product(
        metadata=metadata,
        probe_positions=ProbePositionSequence(points),
        probes=ProbeSequence(probe_modes, None, pixels),
        object_=Object(
            array=obj.astype(np.complex64),
            pixel_geometry=pixels,
            center=ObjectCenter(x_m=0.0, y_m=0.0),
        ),
        losses=[],
    )


def _counts(data) -> np.ndarray:
    return np.rint(np.square(data.diffraction, dtype=np.float64)).astype(np.uint32)


def _two_modes(probe: np.ndarray) -> np.ndarray:
    """A (2, N, N) probe stack: the probe and a weak second mode, as Ptychodus may send."""
    return np.stack([probe, 0.1 * np.roll(probe, 3, axis=-1)]).astype(np.complex64)


def _build_input(directory: Path, algorithm: str) -> object:
    """Write a Ptychodus batch input directory; return the simulated ground truth."""
    directory.mkdir(parents=True)
    truth = simulate_dataset(seed=3, **SCAN)
    other = simulate_dataset(seed=3, object_seed=11, **SCAN)
    guess = np.ones_like(truth.object)
    product = _product(truth, guess, _two_modes(truth.probe))
    counts = _counts(truth)
    bad_pixels = np.zeros((N, N), dtype=bool)
    save_diffraction_data(
        directory / "diffraction.h5",
        AssembledDiffractionData(
            np.arange(truth.n_positions),
            counts,
            PixelGeometry(width_m=DETECTOR_PIXEL_M, height_m=DETECTOR_PIXEL_M),
            bad_pixels,
        ),
    )
    save_product(directory / "product.h5", product)
    # Training data as Ptychodus exports it (raw counts, (modes, N, N) probe): this scan for
    # training, a second object for validation.
    save_ptychopinn_training_data(
        directory / "train_data.npz", ReconstructInput(counts, bad_pixels, product)
    )
    other_product = _product(other, guess, _two_modes(other.probe))
    save_ptychopinn_training_data(
        directory / "test_data.npz", ReconstructInput(_counts(other), bad_pixels, other_product)
    )
    (directory / "settings.ini").write_text(SETTINGS[algorithm])
    return truth


def _ptychodus(action: str, inp: Path, out: Path) -> str:
    """Run ``ptychodus -b ACTION`` and return its log; fail with the log on error."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # One torch thread per process keeps the run time predictable on shared CI machines
    # (two busy threads on two contended cores are many times slower than one).
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(
        [sys.executable, "-m", "ptychodus", "-b", action, "-i", str(inp), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
        cwd=out.parent,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"ptychodus -b {action} failed ({proc.returncode}):\n{log[-6000:]}"
    return log


def _install_model(algorithm: str, train_out: Path, inp: Path) -> None:
    """Put the trained model where batch reconstruct looks (``model.<ext>``)."""
    if algorithm == "ptychopinn_pinn":
        archive = train_out / "wts.h5.zip"
        assert archive.is_file(), sorted(p.name for p in train_out.iterdir())
        # Ptychodus' "save model" copies the archive to model.zip; batch mode unpacks it.
        shutil.copyfile(archive, inp / "model.zip")
    else:
        ckpts = sorted(train_out.glob("run_*/checkpoints/best*.ckpt"))
        assert len(ckpts) == 1, sorted(str(p) for p in train_out.rglob("*"))
        shutil.copyfile(ckpts[0], inp / "model.ckpt")


def _flat_scores(truth) -> dict:
    flat = np.full_like(truth.object, np.abs(truth.object).mean())
    return evaluate(flat, truth.object, xcoords=truth.xcoords, ycoords=truth.ycoords, N=N)


@pytest.mark.parametrize("algorithm", ["ptychopinn_pinn", "ptychopinn-torch_unsupervised"])
def test_ptychodus_batch_train_then_reconstruct(algorithm, tmp_path):
    inp, train_out, rec_out = tmp_path / "in", tmp_path / "train", tmp_path / "rec"
    truth = _build_input(inp, algorithm)

    train_log = _ptychodus("train", inp, train_out)
    assert "Training failed" not in train_log, train_log[-4000:]
    _install_model(algorithm, train_out, inp)
    rec_log = _ptychodus("reconstruct", inp, rec_out)
    assert "Reconstruction failed" not in rec_log, rec_log[-4000:]
    # Nothing was written to the working directory by the child processes.
    assert not (tmp_path / "lightning_logs").exists()
    assert not (tmp_path / "training_outputs").exists()

    # Ptychodus 1.7.0 writes each yielded result as product.<progress:06d>.h5.
    outputs = sorted(rec_out.glob("product*.h5"))
    assert outputs, sorted(p.name for p in rec_out.iterdir())
    product = load_product(outputs[-1])
    obj = product.object_.get_layer(0)
    assert obj.shape == truth.object.shape
    assert np.all(np.isfinite(obj))
    assert np.abs(obj).max() > 0
    scores = evaluate(obj, truth.object, xcoords=truth.xcoords, ycoords=truth.ycoords, N=N)
    flat = _flat_scores(truth)
    report = {"algorithm": algorithm, "scores": scores, "flat_amp_ssim": flat["amp_ssim"]}
    (tmp_path / "scores.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert scores["amp_ssim"] > flat["amp_ssim"], (scores, flat)
    # Geometry preserved: the object lands where the input object was. A few-epoch model is
    # too rough for a sub-pixel registration, so check what a geometry bug would break: the
    # registration stays within a quarter patch, and the reconstruction matches the truth
    # better than the truth transposed or mirrored (swapped axes, flipped positions).
    assert abs(scores["shift_x"]) < N / 4 and abs(scores["shift_y"]) < N / 4, scores
    for name, wrong in {
        "transposed": truth.object.T,
        "mirrored x": truth.object[:, ::-1],
        "mirrored y": truth.object[::-1, :],
    }.items():
        other = evaluate(obj, wrong, xcoords=truth.xcoords, ycoords=truth.ycoords, N=N)
        assert scores["amp_ssim"] > other["amp_ssim"], (name, scores, other)
    # Supported-but-unimplemented settings warn instead of failing; CUDA falls back to CPU.
    if algorithm.startswith("ptychopinn-torch"):
        assert "not implemented by the PtychoPINN engine" in train_log
        assert "CUDA is not available" in train_log or "cuda" in train_log.lower()


def test_ptychodus_config_builders_accept_our_configs():
    """Ptychodus' own parent-side builders, with its default settings, build our configs."""
    import pickle

    from ptychodus.api.settings import SettingsRegistry
    from ptychodus.model.ptychopinn import reconstructor as pinn
    from ptychodus.model.ptychopinn import settings as pinn_settings
    from ptychodus.model.ptychopinn_torch import reconstructor as torch_rec
    from ptychodus.model.ptychopinn_torch import settings as torch_settings

    registry = SettingsRegistry()
    model = pinn_settings.PtychoPINNModelSettings(registry)
    training = pinn_settings.PtychoPINNTrainingSettings(registry)
    for name in ("PINN", "Supervised"):
        train_cfg = pinn._build_training_config(model, training, name)
        infer_cfg = pinn._build_inference_config(model, name, 64, is_developer_mode_enabled=False)
        assert train_cfg.model.N == 0 and infer_cfg.model.N == 64
        assert pickle.loads(pickle.dumps((train_cfg, infer_cfg))) == (train_cfg, infer_cfg)

    configs = torch_rec._build_configs(
        "Unsupervised",
        torch_settings.PtychoPINNTorchDataSettings(registry),
        torch_settings.PtychoPINNTorchModelSettings(registry),
        torch_settings.PtychoPINNTorchTrainingSettings(registry),
        torch_settings.PtychoPINNTorchInferenceSettings(registry),
    )
    assert pickle.loads(pickle.dumps(configs)) == configs
    data, model_cfg, training_cfg = configs[:3]
    assert (data.N, data.C, model_cfg.mode, training_cfg.device) == (128, 4, "Unsupervised", "cuda")


def test_defaults_benchmark_builds_what_each_front_end_trains(monkeypatch):
    """``benchmarks/ptychodus_defaults.py`` trains what the front-ends would: PtychoPINN's
    gridsize 1 as a per-pattern network on 2x2 groups, PtychoPINN-Torch's 7 groups per
    position of C = 4."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    import ptychodus_defaults

    tf_training, _ = ptychodus_defaults._tf_configs(32)
    assert (tf_training.model.N, tf_training.model.n_filters_scale) == (32, 2)
    assert (tf_training.model.gridsize, tf_training.model.per_pattern_network) == (2, True)
    torch_training, _ = ptychodus_defaults._torch_configs(32)
    assert (torch_training.model.gridsize, torch_training.model.per_pattern_network) == (2, False)
    assert torch_training.groups_per_position == 7
