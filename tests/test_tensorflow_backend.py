"""The TensorFlow backend against its PyTorch twin: physics operators, network, weight
conversion, archive, training and both CLIs (needs the ``tensorflow`` extra; CI installs it).

Tolerances are for float32 on the CPU: physics operators agree to 1e-5 of their output's
magnitude, the network with converted weights to 1e-4 (different convolution kernels sum in
different orders), and training on the same scan with the same seed and recipe to 0.1 SSIM.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("tensorflow")

import tensorflow as tf

from ptychopinn import physics as P
from ptychopinn.bundle import (
    ARCHIVE_NAME,
    load_for_backend,
    load_model,
    load_tensorflow_model,
    save_model,
)
from ptychopinn.cli import inference as inference_cli
from ptychopinn.cli import train as train_cli
from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.npz import save_npz
from ptychopinn.errors import ArchiveError, ConfigError
from ptychopinn.model.lightning_module import poisson_deviance
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.tf_backend import physics as T
from ptychopinn.tf_backend.layout import tensorflow_to_torch, torch_to_tensorflow
from ptychopinn.tf_backend.model import TFPtychoPINN
from train_flags import fast_train

RNG = np.random.default_rng(7)
#: Relative agreement of a physics operator with its PyTorch twin (float32).
OP_TOL = 1e-5
#: Relative agreement of the network (converted weights, same input).
NET_TOL = 1e-4


def _complex(*shape) -> np.ndarray:
    return (RNG.normal(size=shape) + 1j * RNG.normal(size=shape)).astype(np.complex64)


def _close(a, b, tol: float) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(float(np.abs(b).max()), 1e-12)
    assert float(np.abs(a - b).max()) <= tol * scale, float(np.abs(a - b).max()) / scale


# ------------------------------------------------------------------------------ physics


def test_far_field_and_illumination_match_torch():
    psi = _complex(3, 4, 32, 32)
    _close(T.far_field(tf.constant(psi)), P.far_field(torch.from_numpy(psi)), OP_TOL)
    probe = _complex(32, 32)
    mask = P.circular_mask(32)
    for sigma in (0.0, 1.3):
        ref = P.illuminate(
            torch.from_numpy(psi), torch.from_numpy(probe), probe_mask=mask, smoothing_sigma=sigma
        )
        got = T.illuminate(
            tf.constant(psi), tf.constant(probe), probe_mask=mask.numpy(), smoothing_sigma=sigma
        )
        _close(got, ref, OP_TOL)
    np.testing.assert_array_equal(T.circular_mask(32), mask.numpy())


@pytest.mark.parametrize("complex_input", [True, False])
def test_fourier_shift_matches_torch(complex_input):
    x = _complex(2, 3, 24, 24) if complex_input else RNG.normal(size=(2, 3, 24, 24)).astype("f4")
    shifts = RNG.uniform(-5, 5, size=(2, 3, 2)).astype(np.float32)
    ref = P.fourier_shift(torch.from_numpy(x), torch.from_numpy(shifts))
    _close(T.fourier_shift(tf.constant(x), tf.constant(shifts)), ref, OP_TOL)


def test_group_canvas_round_trip_matches_torch():
    patches = _complex(2, 4, 32, 32)
    offsets = RNG.uniform(-6, 6, size=(2, 4, 2)).astype(np.float32)
    size = T.canvas_size_for(offsets, 32)
    ref = P.patches_to_group_canvas(torch.from_numpy(patches), torch.from_numpy(offsets), size)
    got = T.patches_to_group_canvas(tf.constant(patches), tf.constant(offsets), size)
    _close(got, ref, OP_TOL)
    back_ref = P.group_canvas_to_patches(ref, torch.from_numpy(offsets), 32)
    _close(T.group_canvas_to_patches(got, tf.constant(offsets), 32), back_ref, OP_TOL)


def test_gradient_integration_matches_torch():
    from ptychopinn.physics.integrate import integrate_gradient

    gx, gy = RNG.normal(size=(2, 2, 3, 40, 50)).astype(np.float32)
    ref = integrate_gradient(torch.from_numpy(gx), torch.from_numpy(gy))
    _close(T.integrate_gradient(tf.constant(gx), tf.constant(gy)), ref, OP_TOL)


def test_losses_and_poisson_gradient_match_torch():
    pred = RNG.uniform(0.1, 20, size=(4, 32, 32)).astype(np.float32)
    counts = RNG.poisson(pred).astype(np.float32)
    pt = torch.from_numpy(pred).requires_grad_(True)
    ref = poisson_deviance(pt, torch.from_numpy(counts))
    ref.backward()
    p_tf = tf.Variable(pred)
    with tf.GradientTape() as tape:
        got = T.poisson_deviance(p_tf, tf.constant(counts))
    grad = tape.gradient(got, p_tf)
    _close(got, ref.detach(), OP_TOL)
    _close(grad, pt.grad, OP_TOL)
    # The analytic gradient of the mean NLL: (1 - counts / pred) / number of elements.
    _close(grad, (1 - counts / (pred + 1e-8)) / pred.size, OP_TOL)
    _close(T.amplitude_mae(tf.constant(pred), tf.constant(counts)),
           P.amplitude_mae(torch.from_numpy(pred), torch.from_numpy(counts)), OP_TOL)  # fmt: skip


# ------------------------------------------------------------------------------ network


def _twins(config: ModelConfig, perturb: bool = True) -> tuple[PtychoPINN, TFPtychoPINN]:
    """A PyTorch model (running statistics and zero-initialised heads perturbed, so
    nothing compares trivially) and a TensorFlow model holding its converted weights."""
    probe = _complex(config.N, config.N)
    torch_model = PtychoPINN(config, probe, 0.3).eval()
    if perturb:
        with torch.no_grad():
            for name, buf in torch_model.named_buffers():
                if "running" in name:
                    buf.copy_(torch.rand_like(buf) + 0.5)
            for name, par in torch_model.named_parameters():
                if "mix" in name or "phase.last" in name:
                    par.copy_(torch.randn_like(par) * 0.05)
    tf_model = TFPtychoPINN(config, probe, 0.3)
    tf_model.load_weight_arrays(torch_to_tensorflow(torch_model.state_dict()), "test")
    return torch_model, tf_model


CONFIGS = [
    {},
    {"normalization": "group"},
    {"normalization": "none", "global_mixing": False, "probe_big": False},
    {"gridsize": 1, "n_filters_scale": 2, "probe_mask": True, "gaussian_smoothing_sigma": 0.7},
    {"per_pattern_network": True},
    {"phase_head": "gradient"},
    {"phase_head": "gradient", "per_pattern_network": True, "normalization": "group"},
    {"phase_head": "gradient", "gridsize": 1},
]


@pytest.mark.parametrize(
    "overrides", CONFIGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "recipe"
)
def test_same_weights_give_the_same_patches_and_amplitudes(overrides):
    config = ModelConfig(N=32, **overrides)
    torch_model, tf_model = _twins(config)
    C = config.gridsize**2
    x = RNG.uniform(0, 5, size=(3, C, 32, 32)).astype(np.float32)
    offsets = RNG.normal(scale=4, size=(3, C, 2)).astype(np.float32)
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x), torch.from_numpy(offsets))
    patches, amplitude = tf_model(x, offsets)
    # Integrating gradients multiplies the lowest frequencies of a float32 difference by up
    # to (S / pi)^2 on an S-pixel group canvas (~150 here); these random weights predict
    # gradients of up to 1.5 rad/px, so the patches agree to 20x the network's tolerance.
    tol = NET_TOL * (20 if config.phase_head == "gradient" else 1)
    _close(patches, ref.object_patches, tol)
    _close(amplitude, ref.amplitude, tol)


def test_gradient_head_reconstructs_the_same_object_with_either_backend():
    """The whole inference of a gradient-head model (fields predicted, amplitudes and
    gradients stitched, integrated once over the object) agrees across backends."""
    from ptychopinn.data.simulate import simulate_dataset
    from ptychopinn.workflows.infer import reconstruct

    config = ModelConfig(N=32, phase_head="gradient")
    torch_model, tf_model = _twins(config)
    scan = simulate_dataset(N=32, object_size=80, step=6, nphotons=1e6, seed=2)
    ref = reconstruct(torch_model, scan, batch_size=16)
    got = reconstruct(tf_model, scan, batch_size=16)
    assert np.ptp(np.angle(ref.object)[ref.weights > 0]) > 0.1  # a phase, not a flat start
    _close(got.object, ref.object, NET_TOL * 10)


def test_both_backends_predict_with_the_scans_batch_norm_statistics():
    """With stored statistics far from the scan's, both backends still reconstruct the same
    object (the scan's own statistics, estimated once on the PyTorch twin), and the
    TensorFlow model's stored statistics are put back afterwards."""
    from ptychopinn.data.simulate import simulate_dataset
    from ptychopinn.workflows.infer import reconstruct

    torch_model, tf_model = _twins(ModelConfig(N=32))
    weights = tf_model.weight_arrays()
    for key in weights:
        if key.endswith("running_mean"):
            weights[key] = weights[key] + 3.0
    tf_model.load_weight_arrays(weights, "test")
    scan = simulate_dataset(N=32, object_size=80, step=6, nphotons=1e6, seed=2)
    assert scan.n_positions >= 64
    ref = reconstruct(torch_model, scan, batch_size=16, adapt_batch_norm=True)
    got = reconstruct(tf_model, scan, batch_size=16, adapt_batch_norm=True)
    _close(got.object, ref.object, NET_TOL * 10)
    stale = reconstruct(tf_model, scan, batch_size=16)
    assert np.abs(stale.object - ref.object).max() > 0.01 * np.abs(ref.object).max()
    for key, value in tf_model.weight_arrays().items():
        np.testing.assert_array_equal(value, weights[key])


def test_dose_augmentation_thins_training_batches_only():
    """The TensorFlow losses thin counts as the PyTorch module does: binomially (Poisson of
    the lower dose), training batches only."""
    from ptychopinn.tf_backend.train import Losses

    config = ModelConfig(N=32)
    _, tf_model = _twins(config)
    x = np.sqrt(RNG.poisson(30.0, size=(4, 4, 32, 32))).astype(np.float32)
    offsets = RNG.normal(scale=3, size=(4, 4, 2)).astype(np.float32)
    plain = Losses(tf_model, TrainingConfig(model=config, output_dir="unused"), 48)
    augmented = Losses(
        tf_model,
        TrainingConfig(model=config, output_dir="unused", dose_augmentation=1.0),
        48,
    )
    ref = float(plain(x, offsets, None, None, training=False)["loss"])
    assert float(augmented(x, offsets, None, None, training=False)["loss"]) == ref
    trained = float(augmented(x, offsets, None, None, training=True)["loss"])
    assert np.isfinite(trained) and trained != pytest.approx(ref, rel=1e-3)
    counts = tf.constant(RNG.poisson(20.0, size=(4000, 1, 8, 8)).astype(np.float32))
    _, thinned, keep = augmented.thinned(counts)
    expected = float(tf.reduce_mean(counts * keep))
    assert np.allclose(thinned.numpy(), np.round(thinned.numpy()))
    assert float(tf.reduce_mean(thinned)) == pytest.approx(expected, rel=0.02)
    half = Losses(
        tf_model,
        TrainingConfig(model=config, output_dir="unused", dose_augmentation=0.5),
        48,
    )
    _, thinned, keep = half.thinned(counts)
    whole = keep.numpy()[:, 0, 0, 0] == 1.0
    assert 0 < whole.sum() < len(whole)  # both kinds of group drawn
    np.testing.assert_array_equal(thinned.numpy()[whole], counts.numpy()[whole])
    assert float(tf.reduce_mean(thinned)) == pytest.approx(
        float(tf.reduce_mean(counts * keep)), rel=0.02
    )


def test_batch_norm_in_training_mode_matches_torch():
    """Training-mode forward passes normalise with the batch's statistics in both."""
    config = ModelConfig(N=32)
    torch_model, tf_model = _twins(config, perturb=False)
    x = RNG.uniform(0, 5, size=(4, 4, 32, 32)).astype(np.float32)
    torch_model.train()
    with torch.no_grad():
        ref = torch_model.predict_patches(torch.from_numpy(x))
    got = tf_model.predict_patches(x, training=True)
    _close(got, ref, NET_TOL)


def test_weight_conversion_round_trips():
    torch_model, tf_model = _twins(ModelConfig(N=32))
    state = torch_model.state_dict()
    back = tensorflow_to_torch(tf_model.weight_arrays(), list(state))
    assert set(back) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)
    kernel = state["generator.encoder.0.0.weight"].numpy()  # (out, in, kh, kw)
    assert tf_model.weight_arrays()["generator.encoder.0.0.weight"].shape == (
        kernel.shape[2], kernel.shape[3], kernel.shape[1], kernel.shape[0],
    )  # fmt: skip


# ------------------------------------------------------------------------------ archive


def test_archives_load_into_either_backend(tmp_path):
    torch_model, tf_model = _twins(ModelConfig(N=32))
    training = TrainingConfig(model=ModelConfig(N=32))
    tf_archive = save_model(tf_model, tmp_path / "tf", training_config=training)
    pt_archive = save_model(torch_model, tmp_path / "pt", training_config=training)
    with zipfile.ZipFile(tf_archive) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    assert names == {"manifest.json", "configs.json", "weights.h5"}
    assert manifest["backend"] == "tensorflow"
    x = RNG.uniform(0, 5, size=(2, 4, 32, 32)).astype(np.float32)
    offsets = RNG.normal(scale=4, size=(2, 4, 2)).astype(np.float32)
    with torch.no_grad():
        ref = torch_model.predict_patches(torch.from_numpy(x), torch.from_numpy(offsets))
    for archive in (tf_archive, pt_archive):
        as_torch = load_model(archive).model
        with torch.no_grad():
            got = as_torch.predict_patches(torch.from_numpy(x), torch.from_numpy(offsets))
        _close(got, ref, NET_TOL)
        _close(load_tensorflow_model(archive).model.predict_patches(x, offsets), ref, NET_TOL)
    assert load_for_backend(tf_archive).backend == "tensorflow"  # auto: the writer's backend
    assert load_for_backend(pt_archive).backend == "pytorch"
    assert load_for_backend(tf_archive, "pytorch").backend == "pytorch"


def test_tensorflow_not_installed_names_the_extra(tmp_path, monkeypatch):
    torch_model, _ = _twins(ModelConfig(N=32), perturb=False)
    archive = save_model(torch_model, tmp_path, training_config=TrainingConfig())
    import ptychopinn.bundle as bundle

    monkeypatch.setattr(bundle, "tensorflow_available", lambda: False)
    with pytest.raises(ArchiveError, match=r"pip install 'ptychopinn\[tensorflow\]'"):
        bundle.load_for_backend(archive, "tensorflow")
    assert bundle.load_for_backend(archive, "auto").backend == "pytorch"


# ------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    from ptychopinn.data.simulate import simulate_dataset

    d = tmp_path_factory.mktemp("tf")
    train = simulate_dataset(N=32, object_size=96, step=4.5, nphotons=1e6, seed=3, jitter=0.3)
    test = simulate_dataset(
        N=32, object_size=96, step=4.5, nphotons=1e6, seed=3, object_seed=11, jitter=0.3
    )
    save_npz(train, d / "train.npz")
    save_npz(test, d / "test.npz")
    return d, train, test


def _ssim(model, scan) -> tuple[float, float]:
    from ptychopinn.metrics import evaluate
    from ptychopinn.workflows.infer import reconstruct

    rec = reconstruct(model, scan)
    m = evaluate(rec.object, scan.object, xcoords=scan.xcoords, ycoords=scan.ycoords, N=scan.N)
    return m["amp_ssim"], m["phase_ssim"]


def test_both_backends_train_to_comparable_quality(scans, tmp_path):
    """Same scan, seed and recipe (N=32, 6 epochs): SSIM within 0.1 of each other."""
    from ptychopinn.tf_backend.train import train as train_tf
    from ptychopinn.workflows.train import train as train_torch

    _, train, test = scans
    training = TrainingConfig(model=ModelConfig(N=32), nepochs=6)
    execution = ExecutionConfig(accelerator="cpu", enable_progress_bar=False, logger="csv")
    tf_result = train_tf(train, training, execution, output_dir=tmp_path / "tf", progress=False)
    torch_result = train_torch(train, training, execution, output_dir=tmp_path / "pt")
    tf_ssim = _ssim(tf_result.model, test)
    torch_ssim = _ssim(torch_result.module.model, test)
    print("tensorflow", tf_ssim, "pytorch", torch_ssim)
    assert min(tf_ssim[0], torch_ssim[0]) > 0.3  # both learned something
    assert abs(tf_ssim[0] - torch_ssim[0]) <= 0.1
    assert abs(tf_ssim[1] - torch_ssim[1]) <= 0.1
    rows = (tmp_path / "tf" / "logs" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr-Adam,train_loss_epoch") and len(rows) == 7


def test_gradient_head_trains_with_tensorflow(scans, tmp_path):
    """The gradient head trains in TensorFlow (gradients merged and integrated on each
    group's canvas inside the compiled step): the loss falls, and the archive reconstructs
    the same object with either backend."""
    from ptychopinn.tf_backend.train import train as train_tf
    from ptychopinn.workflows.infer import reconstruct

    _, train, test = scans
    training = TrainingConfig(model=ModelConfig(N=32, phase_head="gradient"), nepochs=3)
    execution = ExecutionConfig(accelerator="cpu", enable_progress_bar=False, logger="csv")
    result = train_tf(train, training, execution, output_dir=tmp_path, progress=False)
    rows = (tmp_path / "logs" / "metrics.csv").read_text().splitlines()
    losses = [float(row.split(",")[3]) for row in rows[1:]]
    assert losses[-1] < losses[0]
    archive = save_model(result.model, tmp_path / "model", training_config=training)
    via_tf = reconstruct(load_tensorflow_model(archive).model, test)
    via_torch = reconstruct(load_model(archive).model, test)
    assert np.isfinite(via_tf.object).all()
    _close(via_tf.object, via_torch.object, NET_TOL * 10)


def test_resume_continues_where_it_stopped(scans, tmp_path, monkeypatch):
    """Ctrl-C in epoch 3 of 3, then resumed from the last checkpoint: the same weights as
    3 epochs in one go, and the metrics of all 3 epochs."""
    import ptychopinn.tf_backend.train as tf_train
    from ptychopinn.errors import TrainingInterrupted
    from ptychopinn.progress import Progress

    _, train, _ = scans
    execution = ExecutionConfig(accelerator="cpu", deterministic=True)
    training = TrainingConfig(model=ModelConfig(N=32), n_groups=24, nepochs=3)
    whole = tf_train.train(train, training, execution, output_dir=tmp_path / "whole",
                           progress=False)  # fmt: skip

    class CtrlCInEpoch3(Progress):
        def __iter__(self):
            if self.desc.startswith("epoch 3/"):
                raise KeyboardInterrupt
            yield from super().__iter__()

    out = tmp_path / "parts"
    monkeypatch.setattr(tf_train, "Progress", CtrlCInEpoch3)
    with pytest.raises(TrainingInterrupted, match="resume_from .*last.h5"):
        tf_train.train(train, training, execution, output_dir=out, progress=False)
    monkeypatch.setattr(tf_train, "Progress", Progress)
    last = out / "checkpoints" / "last.h5"
    with pytest.raises(ConfigError, match="nepochs"):
        tf_train.check_resume(last, 2)
    # The checkpoint keeps its model settings: another gridsize is refused, naming it.
    other = dataclasses.replace(training.model, gridsize=1)
    with pytest.raises(ConfigError, match=r"gridsize=2 \(this run: 1\)"):
        tf_train.check_resume(last, 4, other)
    assert tf_train.check_resume(last, 4, training.model)["epochs_done"] == 2
    resumed = tf_train.train(train, training, execution, output_dir=out, resume_from=last,
                             progress=False)  # fmt: skip
    a, b = whole.model.weight_arrays(), resumed.model.weight_arrays()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=key)
    epochs = [line.split(",")[0] for line in (out / "logs" / "metrics.csv").read_text().split()]
    assert epochs[1:] == ["0", "1", "2"]


# ------------------------------------------------------------------------------ CLIs


def test_cli_train_tensorflow_then_infer_with_either_backend(scans, tmp_path, capsys):
    d, _, _ = scans
    model_dir = tmp_path / "model"
    code = train_cli.main([
        "--backend", "tensorflow", "--train_data_file", str(d / "train.npz"),
        "--test_data_file", str(d / "test.npz"), "--output_dir", str(model_dir),
        "--do_stitching", *fast_train(2),
    ])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "tensorflow" and (model_dir / "loss_curve.png").is_file()
    assert (model_dir / "checkpoints" / "last.h5").is_file()
    objects = {}
    for backend in ("pytorch", "tensorflow"):
        out = tmp_path / backend
        code = inference_cli.main([
            "--model_path", str(model_dir), "--test_data_file", str(d / "test.npz"),
            "--output_dir", str(out), "--backend", backend, "--comparison_plot", "false",
        ])  # fmt: skip
        assert code == 0
        assert json.loads(capsys.readouterr().out)["backend"] == backend
        objects[backend] = np.load(out / "reconstruction.npz")["object"]
    _close(objects["tensorflow"], objects["pytorch"], NET_TOL)


def test_cli_infers_a_pytorch_archive_with_tensorflow(scans, tmp_path, capsys):
    d, _, _ = scans
    model_dir = tmp_path / "model"
    assert train_cli.main([
        "--train_data_file", str(d / "train.npz"), "--output_dir", str(model_dir),
        *fast_train(1),
    ]) == 0  # fmt: skip
    capsys.readouterr()
    code = inference_cli.main([
        "--model_path", str(model_dir), "--test_data_file", str(d / "test.npz"),
        "--output_dir", str(tmp_path / "rec"), "--backend", "tensorflow",
        "--refine", "object:2", "--comparison_plot", "false",
    ])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "tensorflow" and summary["refine"]["epochs"] == 2


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--torch-devices", "2"], "devices: expected 1"),
        (["--torch-precision", "bf16-mixed"], "precision"),
        (["--torch-logger", "mlflow"], "logger"),
    ],
)
def test_cli_refuses_what_the_tensorflow_backend_does_not_do(scans, tmp_path, capsys, argv,
                                                             expected):  # fmt: skip
    d, _, _ = scans
    code = train_cli.main([
        "--backend", "tensorflow", "--train_data_file", str(d / "train.npz"),
        "--output_dir", str(tmp_path), *fast_train(1), *argv,
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and expected in err and "Traceback" not in err
    assert not (tmp_path / ARCHIVE_NAME).exists()


def test_cli_refuses_a_lightning_checkpoint_for_tensorflow(scans, tmp_path, capsys):
    d, _, _ = scans
    fake = tmp_path / "last.ckpt"
    fake.write_bytes(b"not hdf5")
    code = train_cli.main([
        "--backend", "tensorflow", "--train_data_file", str(d / "train.npz"),
        "--output_dir", str(tmp_path / "o"), "--resume_from", str(fake), *fast_train(2),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "last.ckpt" in err and "Traceback" not in err


def test_ptycho_front_end_trains_with_the_tensorflow_backend(scans, tmp_path):
    """Ptychodus' PtychoPINN front-end path (ptycho.workflows.components) on either backend."""
    from ptycho import model_manager
    from ptycho.config.config import ModelConfig as LegacyModel
    from ptycho.config.config import TrainingConfig as LegacyTraining
    from ptycho.workflows.components import load_inference_bundle, run_cdi_example

    _, train, test = scans
    config = LegacyTraining(model=LegacyModel(N=32), nepochs=1, backend="tensorflow",
                            output_dir=str(tmp_path / "run"))  # fmt: skip
    amplitude, phase, results = run_cdi_example(train, test, config, do_stitching=True)
    assert results["model"].backend == "tensorflow" and amplitude.shape == phase.shape
    path = model_manager.save(tmp_path / "bundle")
    model, params = load_inference_bundle(path.parent, device="cpu")
    assert model.N == 32 and params["intensity_scale"] == pytest.approx(results["intensity_scale"])
