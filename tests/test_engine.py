"""The reconstruction engine: network, physics-informed model, training and inference."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import far_field_intensity
from ptychopinn.errors import ArchiveError, ConfigError, DataValidationError
from ptychopinn.metrics import evaluate
from ptychopinn.model.lightning_module import PINNLightningModule
from ptychopinn.model.network import Generator, SpatialMixing, UpsampledConv
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.model.state_check import require_matching_state, state_mismatch
from ptychopinn.workflows import execution as execution_module
from ptychopinn.workflows.datamodule import training_labels
from ptychopinn.workflows.execution import resolve_accelerator, resolve_precision
from ptychopinn.workflows.infer import reconstruct
from ptychopinn.workflows.train import train


def quiet_execution(**kw) -> ExecutionConfig:
    return ExecutionConfig(accelerator="cpu", logger="csv", enable_progress_bar=False, **kw)


@pytest.mark.parametrize("N", [32, 64, 128])
@pytest.mark.parametrize("gridsize", [1, 2, 3])
def test_generator_shapes_and_ranges(N, gridsize):
    c = gridsize**2
    gen = Generator(N, c, n_filters_scale=1)
    amp, phase = gen(torch.rand(2, c, N, N))
    assert amp.shape == phase.shape == (2, c, N, N)
    assert float(amp.min()) >= 0 and float(amp.max()) <= 1
    assert float(phase.abs().max()) <= math.pi


@pytest.mark.parametrize("normalization", ["none", "batch", "group"])
@pytest.mark.parametrize("global_mixing", [False, True])
def test_generator_options(normalization, global_mixing):
    gen = Generator(
        32, 4, n_filters_scale=1, normalization=normalization, global_mixing=global_mixing
    )
    amp, phase = gen(torch.rand(3, 4, 32, 32))
    assert amp.shape == phase.shape == (3, 4, 32, 32)
    n_norm = sum(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in gen.modules())
    assert (n_norm > 0) == (normalization != "none")


def test_global_mixing_starts_as_identity_and_mixes_all_positions():
    mix = SpatialMixing(4)
    z = torch.randn(2, 3, 4, 4)
    assert torch.equal(mix(z), z)
    torch.nn.init.normal_(mix.mix.weight)
    z2 = z.clone()
    z2[..., 0, 0] += 10.0  # change one position: every position of the output may change
    changed = (mix(z2) - mix(z)).abs()[..., 1:, 1:]
    assert float(changed.max()) > 0


@pytest.mark.parametrize("c_out", [1, 3])
def test_upsampled_conv_is_upsampling_then_convolving(c_out):
    """The sub-pixel form gives the published layer's output and gradients, edges included."""
    torch.manual_seed(0)
    layer = UpsampledConv(5, c_out).double()
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    direct = layer[1](layer[0](x))
    assert direct.shape == (2, c_out, 12, 14)
    fast = layer(x)
    torch.testing.assert_close(fast, direct, rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(direct)
    grads_direct = torch.autograd.grad((direct * probe).sum(), [x, *layer.parameters()])
    grads_fast = torch.autograd.grad((fast * probe).sum(), [x, *layer.parameters()])
    for a, b in zip(grads_fast, grads_direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_centre_only_decoder_zero_pads():
    gen = Generator(64, 1, n_filters_scale=1, full_size=False)
    amp, _ = gen(torch.rand(1, 1, 64, 64))
    assert amp.shape == (1, 1, 64, 64)
    assert torch.all(amp[..., :16, :] == 0) and torch.all(amp[..., 16:48, 16:48] > 0)


def test_forward_model_reproduces_simulated_counts(small_scan):
    """With the true object, the model's forward model predicts the noiseless data."""
    d = small_scan
    N = d.N
    probe_norm = float(np.linalg.norm(d.probe))
    model = PtychoPINN(ModelConfig(N=N), d.probe, intensity_scale=(N / 2) / probe_norm)
    truth = torch.from_numpy(d.labels[:20])[:, None]
    predicted = model.diffraction_amplitude(truth).square()[:, 0].detach().numpy()
    expected = far_field_intensity(d.probe[None] * d.labels[:20])
    np.testing.assert_allclose(predicted, expected, rtol=2e-3, atol=1e-3 * expected.max())
    # ... and the measured counts are Poisson samples around it.
    measured = d.counts[:20]
    assert abs(measured.sum() / expected.sum() - 1) < 0.01


def test_overlap_constraint_couples_patches():
    N = 32
    model = PtychoPINN(ModelConfig(N=N, gridsize=2, object_big=True), np.ones((N, N)), 1.0)
    base = torch.ones(1, 4, N, N, dtype=torch.complex64)
    offsets = torch.tensor([[[-4.0, -4.0], [4.0, -4.0], [-4.0, 4.0], [4.0, 4.0]]])
    changed = base.clone()
    changed[0, 1] *= 2  # only the second member's prediction differs
    a = model.apply_overlap_constraint(base, offsets)
    b = model.apply_overlap_constraint(changed, offsets)
    delta = (b - a)[0, 0].abs()
    # Member 0 sees member 1 where they overlap (columns shifted by 8 px) and not elsewhere.
    assert float(delta[:, 12:20].mean()) > 0.1
    assert float(delta[:, :6].max()) < 1e-3


@pytest.mark.parametrize("kind", ["disk", "lens"])
def test_overlap_constraint_keeps_one_object_under_a_hard_edged_probe(kind):
    """Four patches of one flat object, merged at sub-pixel offsets and cut out again, come
    back as they were where the probe lights them: a focused disk's hard-edged weights, once
    Fourier-shifted, used to ring (mean error 0.7) and taught the network rings."""
    from ptychopinn.data.simulate import make_probe

    probe = make_probe(64, kind=kind)
    model = PtychoPINN(ModelConfig(N=64, gridsize=2, object_big=True), probe, 1.0)
    patches = torch.full((1, 4, 64, 64), 0.8 + 0.3j, dtype=torch.complex64)
    offsets = torch.tensor([[[-3.3, -3.3], [3.3, -3.3], [-3.3, 3.3], [3.3, 3.3]]])
    merged = model.apply_overlap_constraint(patches, offsets)
    lit = torch.as_tensor(np.abs(probe) > 0.05 * np.abs(probe).max())
    error = (merged - patches)[0][:, lit].abs()
    assert float(error.mean()) < 0.005 and float(error.max()) < 0.02


def test_per_pattern_network_reads_each_pattern_alone():
    """With ``per_pattern_network`` a patch depends on its own pattern only (before the
    overlap constraint), so the model takes any grouping; with offsets the group's patches
    are still merged (the constraint it trains with)."""
    N = 32
    torch.manual_seed(0)
    config = ModelConfig(N=N, gridsize=2, per_pattern_network=True, normalization="none")
    model = PtychoPINN(config, np.ones((N, N)), 0.1).eval()
    assert model.generator.encoder[0][0].in_channels == 1
    with torch.no_grad():
        model.generator.phase.last[-1].weight.normal_(std=0.05)  # the phase head starts at zero
        x = torch.rand(2, 4, N, N) * 5
        group = model.predict_patches(x)
        alone = model.predict_patches(x.reshape(8, 1, N, N)).reshape(2, 4, N, N)
        torch.testing.assert_close(group, alone)
        swapped = model.predict_patches(x[:, [1, 0, 2, 3]])
        torch.testing.assert_close(swapped[:, 0], group[:, 1])
        offsets = torch.tensor([[[-4.0, -4.0], [4.0, -4.0], [-4.0, 4.0], [4.0, 4.0]]] * 2)
        merged = model.predict_patches(x, offsets)
        assert float((merged - group).abs().max()) > 1e-3
    grouped_config = ModelConfig(N=N, gridsize=2, per_pattern_network=False)
    grouped = PtychoPINN(grouped_config, np.ones((N, N)), 0.1)
    assert grouped.generator.encoder[0][0].in_channels == 4


def _trivial_ssim(data) -> float:
    """SSIM of a constant-amplitude, zero-phase guess: what a model must beat."""
    guess = np.full_like(data.object, 0.75)
    return evaluate(guess, data.object, xcoords=data.xcoords, ycoords=data.ycoords, N=data.N)


def test_training_reduces_loss_and_beats_trivial_reconstruction(small_scan, tmp_path):
    d = small_scan
    # The recipe (the defaults) at N=32. A single-position network without normalisation
    # (gridsize 1, batch 4) was used here before: across seeds and float32 / bfloat16 it
    # sometimes collapsed to a flat amplitude (SSIM 0.32) or phase (0.06), while the recipe
    # gave 0.77-0.82 / 0.66-0.71 after 4 epochs at seeds 42 and 1 in both precisions.
    cfg = TrainingConfig(
        model=ModelConfig(N=32), nepochs=4, n_groups=None, output_dir=str(tmp_path)
    )
    result = train(d, cfg, quiet_execution())
    history = np.genfromtxt(tmp_path / "logs" / "metrics.csv", delimiter=",", names=True)
    epoch_loss = history["train_loss_epoch"][~np.isnan(history["train_loss_epoch"])]
    assert epoch_loss[-1] < 0.7 * epoch_loss[0], epoch_loss
    rec = reconstruct(result.module.model, d)
    scores = evaluate(rec.object, d.object, xcoords=d.xcoords, ycoords=d.ycoords, N=d.N)
    trivial = _trivial_ssim(d)
    assert scores["amp_ssim"] > trivial["amp_ssim"] + 0.25
    assert scores["phase_ssim"] > trivial["phase_ssim"] + 0.1


def test_inference_covers_every_position(small_scan):
    d = small_scan
    model = PtychoPINN(ModelConfig(N=32, gridsize=2, n_filters_scale=1), d.probe, 1.0)
    rec = reconstruct(model, d, batch_size=37, return_patches=True)
    assert rec.patches.shape == (d.n_positions, 32, 32)
    assert rec.object.shape == d.object.shape
    lit = rec.weights > 1e-3 * rec.weights.max()
    ys, xs = np.nonzero(lit)
    assert xs.min() <= d.xcoords.min() and xs.max() >= d.xcoords.max()
    assert ys.min() <= d.ycoords.min() and ys.max() >= d.ycoords.max()


def test_inference_rejects_wrong_pattern_size(small_scan):
    model = PtychoPINN(ModelConfig(N=64), np.ones((64, 64)), 1.0)
    with pytest.raises(DataValidationError, match="N=64"):
        reconstruct(model, small_scan)


def test_supervised_without_labels_is_a_clear_error(tiny_scan, tmp_path):
    d = tiny_scan.subset(np.arange(tiny_scan.n_positions))
    d.object = None
    d.labels = None
    cfg = TrainingConfig(
        model=ModelConfig(N=32, model_type="supervised"), nepochs=1, output_dir=str(tmp_path)
    )
    with pytest.raises(DataValidationError, match="supervised.*'Y'"):
        train(d, cfg, quiet_execution())


def test_supervised_mode_learns_from_labels(tiny_scan, tmp_path):
    cfg = TrainingConfig(
        model=ModelConfig(N=32, model_type="supervised", n_filters_scale=1),
        nepochs=3,
        batch_size=4,
        n_groups=None,
        output_dir=str(tmp_path),
    )
    result = train(tiny_scan, cfg, quiet_execution())
    metrics = result.trainer.callback_metrics
    # Predicting zero scores the mean label magnitude (~0.75 here).
    zero_mae = float(np.mean(np.abs(training_labels(tiny_scan))))
    assert "train_realspace_mae" in metrics
    assert float(metrics["train_loss_epoch"]) < 0.6 * zero_mae, (metrics, zero_mae)


def test_resume_continues_from_saved_epoch(tiny_scan, tmp_path):
    model = ModelConfig(N=32, n_filters_scale=1)
    first = train(
        tiny_scan,
        TrainingConfig(model=model, nepochs=2, n_groups=None, output_dir=str(tmp_path)),
        quiet_execution(),
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.exists() and first.trainer.current_epoch == 2
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1
    second = train(
        tiny_scan,
        TrainingConfig(model=model, nepochs=4, n_groups=None, output_dir=str(tmp_path)),
        quiet_execution(),
        resume_from=last,
    )
    assert second.trainer.current_epoch == 4
    steps_per_epoch = math.ceil(len(second.groups.indices) / TrainingConfig().batch_size)
    assert second.trainer.global_step == 4 * steps_per_epoch

    # Another configuration: one message naming the file and the setting, nothing written.
    wider = TrainingConfig(
        model=ModelConfig(N=32, n_filters_scale=2), nepochs=4, output_dir=str(tmp_path / "w")
    )
    with pytest.raises(
        ConfigError, match=r"last\.ckpt was trained with other model settings: n_filters_scale=1"
    ):
        train(tiny_scan, wider, quiet_execution(), resume_from=last)
    assert not (tmp_path / "w" / "checkpoints" / "interrupted.ckpt").exists()
    with pytest.raises(ArchiveError, match=r"missing\.ckpt: checkpoint not found"):
        train(tiny_scan, wider, quiet_execution(), resume_from=tmp_path / "missing.ckpt")
    # Lightning's own loader (as Ptychodus calls it) gets the same check.
    other_grid = {**saved["hyper_parameters"]["model_config"], "n_filters_scale": 2}
    with pytest.raises(ArchiveError, match="weights do not fit this model"):
        PINNLightningModule.load_from_checkpoint(last, model_config=other_grid)


def test_state_mismatch_names_what_differs():
    model = {
        "a": torch.zeros(2, 3),
        "b": torch.zeros(4),
        **{f"c{i}": torch.zeros(1) for i in range(5)},
    }
    assert state_mismatch(model, dict(model)) is None
    saved = {"a": torch.zeros(3, 3), "x": torch.zeros(1)}
    problem = state_mismatch(model, saved)
    assert "1 with another shape (saved vs model: a (3, 3) vs (2, 3))" in problem
    assert (
        "6 missing (b, c0, c1 and 3 more)" in problem and "1 unknown to this model (x)" in problem
    )
    with pytest.raises(ArchiveError, match="^run.ckpt: no model weights"):
        require_matching_state(model, None, "run.ckpt")


def test_accelerator_falls_back_to_cpu_with_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="CPU"):
        assert resolve_accelerator("cuda") == "cpu"
    with pytest.warns(RuntimeWarning, match="CPU"):
        assert resolve_accelerator("auto") in ("cpu", "mps")


def test_auto_precision_is_bfloat16_only_on_a_cpu_with_bfloat16_units(monkeypatch):
    assert isinstance(execution_module.native_bf16_cpu(), bool)  # the real query answers
    monkeypatch.setattr(execution_module, "native_bf16_cpu", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "cuda") == "32-true"
    assert resolve_precision("32-true", "cpu") == "32-true"  # an explicit choice stands
    monkeypatch.setattr(execution_module, "native_bf16_cpu", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_bfloat16_hardware_is_amx_or_avx512_bf16(monkeypatch):
    def answers(amx, avx512_bf16):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", avx512_bf16, raising=False)
        return execution_module.native_bf16_cpu()

    def broken():
        raise RuntimeError("not in this build")

    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    assert answers(lambda: True, lambda: False)  # Sapphire Rapids and later
    assert answers(lambda: False, lambda: True)  # Cooper Lake, Zen 4
    assert answers(broken, lambda: True)
    assert not answers(lambda: False, lambda: False)
    assert not answers(broken, broken)


def test_bfloat16_training_matches_float32(small_scan, tmp_path):
    """bf16-mixed (what ``auto`` picks on CPUs with bfloat16 units) trains as well as
    float32: parameters and patches stay float32/complex64, the losses end within 15 % and
    the reconstructions score alike."""
    scores, final_loss = {}, {}
    for precision in ("32-true", "bf16-mixed"):
        out = tmp_path / precision
        cfg = TrainingConfig(
            model=ModelConfig(N=32, gridsize=1, n_filters_scale=1, normalization="none"),
            nepochs=4,
            batch_size=4,
            dose_augmentation=0.0,  # the loss of thinned batches is noisier than this test
            output_dir=str(out),
        )
        result = train(small_scan, cfg, quiet_execution(precision=precision))
        assert result.trainer.precision == precision
        assert all(p.dtype == torch.float32 for p in result.module.parameters())
        history = np.genfromtxt(out / "logs" / "metrics.csv", delimiter=",", names=True)
        epoch_loss = history["train_loss_epoch"]
        final_loss[precision] = epoch_loss[~np.isnan(epoch_loss)][-1]
        rec = reconstruct(result.module.model, small_scan)
        assert rec.object.dtype == np.complex64 and np.isfinite(rec.object).all()
        s = small_scan
        scores[precision] = evaluate(
            rec.object, s.object, xcoords=s.xcoords, ycoords=s.ycoords, N=s.N
        )
    assert abs(final_loss["bf16-mixed"] / final_loss["32-true"] - 1) < 0.15, final_loss
    for key in ("amp_ssim", "phase_ssim"):
        assert abs(scores["bf16-mixed"][key] - scores["32-true"][key]) < 0.05, scores


def test_gradient_accumulation_steps_optimizer_less_often(tiny_scan, tmp_path):
    cfg = TrainingConfig(
        model=ModelConfig(N=32, n_filters_scale=1),
        nepochs=1,
        batch_size=8,
        n_groups=None,
        output_dir=str(tmp_path),
    )
    result = train(tiny_scan, cfg, quiet_execution(accumulate_grad_batches=3))
    batches = math.ceil(len(result.groups.indices) / 8)
    assert result.trainer.global_step == math.ceil(batches / 3)


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from pathlib import Path
    from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
    from ptychopinn.data.simulate import simulate_dataset
    from ptychopinn.workflows.train import train
    d = simulate_dataset(N=32, object_size=72, step=6, nphotons=1e5, seed=5)
    cfg = TrainingConfig(model=ModelConfig(N=32, n_filters_scale=1), nepochs=2, batch_size=8,
                         n_groups=None, output_dir=sys.argv[1])
    ex = ExecutionConfig(accelerator="cpu", devices=2, strategy="ddp", logger="none",
                         enable_progress_bar=False)
    r = train(d, cfg, ex)
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "none"
    result = {"rank": r.trainer.global_rank, "world": r.trainer.world_size,
              "steps": r.trainer.global_step, "backend": backend, "groups": len(r.groups.indices)}
    Path(sys.argv[1], f"rank{r.trainer.global_rank}.json").write_text(json.dumps(result))
    """
)


def test_ddp_on_cpu_with_two_processes(tmp_path):
    """Two gloo processes each train on half of the groups (one file per rank)."""
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world"] == 2 and r["backend"] == "gloo" for r in results)
    per_rank = math.ceil(results[0]["groups"] / 2)
    assert all(r["steps"] == 2 * math.ceil(per_rank / 8) for r in results)


def test_training_starts_from_a_flat_phase():
    """The phase head starts at zero (a constant phase offset is invisible to the data)."""
    from ptychopinn.model.network import Generator

    gen = Generator(32, 4, n_filters_scale=1, normalization="batch").eval()
    with torch.no_grad():
        amp, phase = gen(torch.rand(2, 4, 32, 32))
    assert torch.count_nonzero(phase) == 0
    assert float(amp.std()) > 0
    assert any(p.requires_grad for p in gen.phase.parameters())
