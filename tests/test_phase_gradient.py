"""The gradient phase head: integration of phase gradients, the group merge and the stitching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.metrics import evaluate
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.physics.integrate import integrate_gradient, phase_gradient
from ptychopinn.physics.patches import extract_patches
from ptychopinn.workflows.infer import _GradientStitcher, reconstruct
from ptychopinn.workflows.train import train


def _smooth_phase(h: int, w: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w] / max(h, w)
    phase = sum(
        rng.normal() * np.cos(2 * np.pi * (kx * x + ky * y) + rng.uniform(0, 2 * np.pi))
        for kx, ky in [(1, 0), (0, 1), (1, 1), (2, 1), (3, 2)]
    )
    return torch.from_numpy(phase)


def test_integration_inverts_forward_differences_exactly():
    phase = _smooth_phase(40, 52)
    gx, gy = phase_gradient(phase)
    recovered = integrate_gradient(gx, gy)
    expected = phase - phase.mean()
    assert torch.allclose(recovered, expected, atol=1e-10)


def test_integration_recovers_a_plateau_from_its_edges_alone():
    """A disk of constant phase 1.5 rad: the gradients are zero except at its rim, and the
    plateau level comes back (what one pattern inside the disk cannot tell)."""
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disk = 1.5 * ((x - 30) ** 2 + (y - 34) ** 2 < 15**2).double()
    gx, gy = phase_gradient(disk)
    assert (gx != 0).double().mean() < 0.05  # edges only
    recovered = integrate_gradient(gx, gy)
    inside = recovered[34, 30] - recovered[2, 2]
    assert abs(float(inside) - 1.5) < 1e-8


def test_integration_is_least_squares_under_noise_and_batched():
    torch.manual_seed(0)
    phase = torch.stack([_smooth_phase(32, 32, s) for s in range(3)])
    gx, gy = phase_gradient(phase)
    noisy = integrate_gradient(gx + 0.05 * torch.randn_like(gx), gy + 0.05 * torch.randn_like(gy))
    error = noisy - (phase - phase.mean((-2, -1), keepdim=True))
    assert noisy.shape == phase.shape
    assert float(error.abs().mean()) < 0.05  # noise of 0.05 rad/px does not accumulate


def test_integration_is_differentiable_and_checks_shapes():
    gx = torch.randn(2, 6, 7, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(integrate_gradient, (gx, gy))
    with pytest.raises(ValueError, match="gx and gy"):
        integrate_gradient(torch.zeros(4, 4), torch.zeros(4, 5))


def _object(size: int = 80) -> torch.Tensor:
    phase = 2.0 * _smooth_phase(size, size, seed=4)
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    amplitude = 0.7 + 0.2 * torch.cos(x / 9.0) * torch.sin(y / 7.0)
    return torch.polar(amplitude.float(), phase.float())


def test_group_merge_of_exact_gradients_gives_consistent_patches():
    """Patches cut from one object, given to the merge as amplitude and gradients, come back
    as that object's patches up to one phase constant for the whole group.

    Not exactly: the canvas integration is least squares with zero gradient outside the
    patches, and a gradient field cut off at an edge is not a gradient field any more, so
    some error leaks in from the border (a few hundredths of a radian where lit)."""
    N = 32
    obj = _object()
    centres = torch.tensor([[[38.0, 40.0], [43.0, 40.0], [38.0, 45.0], [43.5, 44.5]]])
    patches = extract_patches(obj, centres[0], N)[None]  # (1, 4, N, N)
    gx, gy = phase_gradient(patches.angle().double())
    r2 = ((np.arange(N) - (N - 1) / 2) ** 2)[:, None] + ((np.arange(N) - (N - 1) / 2) ** 2)
    probe = np.exp(-r2 / (2 * 6.0**2))  # the merge weights each patch by its illumination
    model = PtychoPINN(ModelConfig(N=N, phase_head="gradient"), probe, 1.0)
    offsets = centres - centres.mean(dim=1, keepdim=True)
    merged = model.merge_gradient_patches(
        patches.abs(), torch.stack([gx, gy], dim=2).float(), offsets
    )
    lit = slice(8, 24)  # away from the patch borders, where Fourier shifts ring
    ratio = merged[..., lit, lit] * patches[..., lit, lit].conj()
    constant = torch.angle(ratio.sum())
    error = torch.angle(ratio * torch.exp(-1j * constant))
    assert float(error.abs().mean()) < 0.04 and float(error.abs().max()) < 0.2
    amp_error = (merged[..., lit, lit].abs() - patches[..., lit, lit].abs()).abs()
    assert float(amp_error.mean()) < 0.02 and float(amp_error.max()) < 0.08  # shift ringing


def test_gradient_stitcher_rebuilds_an_object_with_phase_beyond_pi():
    """Exact amplitude and gradient patches (pixel-aligned: centres at half pixels for even
    N) stitch back to the object, whose phase spans 6 rad and so wraps."""
    N, size = 32, 80
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    obj = _object(size) * torch.polar(torch.ones(size, size), 0.08 * x)
    grid = torch.arange(15.5, 66.0, 5.0)
    centres = torch.cartesian_prod(grid, grid)
    patches = extract_patches(obj, centres, N)
    gx, gy = phase_gradient(patches.angle())
    packed = torch.stack([torch.complex(patches.abs(), 0 * gx), torch.complex(gx, gy)], dim=1)
    r2 = ((torch.arange(N) - (N - 1) / 2) ** 2)[:, None] + ((torch.arange(N) - (N - 1) / 2) ** 2)
    stitcher = _GradientStitcher((size, size), N, "cpu", torch.exp(-r2 / (2 * 6.0**2)))
    stitcher.add(packed, centres)
    rebuilt, _ = stitcher.result()
    scores = evaluate(
        rebuilt.numpy(),
        obj.numpy(),
        xcoords=centres[:, 0].numpy(),
        ycoords=centres[:, 1].numpy(),
        N=N,
    )
    assert scores["phase_ssim"] > 0.99 and scores["amp_ssim"] > 0.99


@pytest.mark.parametrize("per_pattern", [True, False])
def test_gradient_head_shapes(per_pattern):
    N = 32
    model = PtychoPINN(
        ModelConfig(N=N, phase_head="gradient", per_pattern_network=per_pattern),
        np.ones((N, N)),
        1.0,
    )
    x = torch.rand(3, 4, N, N)
    amp, grad = model.predict_fields(x)
    assert amp.shape == (3, 4, N, N) and grad.shape == (3, 4, 2, N, N)
    out = model(x, torch.randn(3, 4, 2) * 3)
    assert out.object_patches.shape == (3, 4, N, N) and out.object_patches.is_complex()
    assert float(grad.abs().max()) == 0  # training starts from a flat phase


def test_gradient_head_trains_and_reconstructs(small_scan, tmp_path):
    cfg = TrainingConfig(
        model=ModelConfig(N=32, phase_head="gradient"), nepochs=4, output_dir=str(tmp_path)
    )
    ex = ExecutionConfig(
        accelerator="cpu", logger="csv", enable_progress_bar=False, enable_checkpointing=False
    )
    result = train(small_scan, cfg, ex)
    history = np.genfromtxt(tmp_path / "logs" / "metrics.csv", delimiter=",", names=True)
    losses = history["train_loss_epoch"][~np.isnan(history["train_loss_epoch"])]
    assert losses[-1] < 0.8 * losses[0], losses
    rec = reconstruct(result.module.model, small_scan, return_patches=True)
    assert rec.patches.shape == (small_scan.n_positions, 32, 32)
    scores = evaluate(
        rec.object,
        small_scan.object,
        xcoords=small_scan.xcoords,
        ycoords=small_scan.ycoords,
        N=32,
    )
    assert scores["amp_ssim"] > 0.3 and scores["phase_ssim"] > 0.2
