"""Numeric tests of the differentiable physics operators (ptychopinn.physics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from ptychopinn.errors import ConfigError
from ptychopinn.physics import (
    PatchAccumulator,
    amplitude_mae,
    bilinear_shift,
    circular_mask,
    diffraction_amplitude,
    diffraction_intensity,
    extract_patches,
    far_field,
    fourier_shift,
    gaussian_blur,
    group_canvas_to_patches,
    illuminate,
    patches_to_group_canvas,
    poisson_nll,
    realspace_mae,
    scatter_patches,
    stitch_patches,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def band_limited(
    shape: tuple[int, ...],
    cutoff: float,
    *,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """Random periodic field whose spectrum is zero beyond ``cutoff`` cycles/pixel, max |.| = 1."""
    h, w = shape[-2:]
    spec = torch.randn(shape, dtype=torch.complex128, generator=_generator(seed))
    ky = torch.fft.fftfreq(h, dtype=torch.float64)[:, None].abs()
    kx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :].abs()
    field = torch.fft.ifft2(spec * ((ky < cutoff) & (kx < cutoff)))
    field = field / field.abs().amax(dim=(-2, -1), keepdim=True)
    if not dtype.is_complex:
        field = field.real / field.real.abs().amax(dim=(-2, -1), keepdim=True)
    return field.to(device=device, dtype=dtype)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# --------------------------------------------------------------------------- far field


def test_far_field_matches_numpy_for_batched_input(device):
    x = torch.randn(3, 2, 16, 16, dtype=torch.complex64, generator=_generator(1)).to(device)
    ref = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(x.cpu().numpy(), axes=(-2, -1)), norm="ortho"),
        axes=(-2, -1),
    )
    out = far_field(x)
    assert out.shape == x.shape and out.dtype == torch.complex64 and out.device == x.device
    np.testing.assert_allclose(out.cpu().numpy(), ref, atol=1e-5)
    odd = torch.randn(15, 15, dtype=torch.complex128, generator=_generator(2)).to(device)
    ref_odd = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(odd.cpu().numpy()), norm="ortho"))
    np.testing.assert_allclose(far_field(odd).cpu().numpy(), ref_odd, atol=1e-12)


def test_far_field_parseval_delta_and_constant(device):
    n = 16
    x = torch.randn(4, n, n, dtype=torch.complex64, generator=_generator(3)).to(device)
    energy_in = x.abs().square().sum(dim=(-2, -1))
    energy_out = far_field(x).abs().square().sum(dim=(-2, -1))
    torch.testing.assert_close(energy_out, energy_in, rtol=1e-5, atol=0)

    delta = torch.zeros(n, n, dtype=torch.complex64, device=device)
    delta[n // 2, n // 2] = 1.0
    flat = far_field(delta)
    torch.testing.assert_close(flat, torch.full_like(flat, 1.0 / n), atol=1e-6, rtol=0)

    const = torch.full((n, n), 2.0, dtype=torch.complex64, device=device)
    spectrum = far_field(const)
    assert torch.isclose(spectrum[n // 2, n // 2].real, torch.tensor(2.0 * n, device=device))
    spectrum[n // 2, n // 2] = 0
    assert spectrum.abs().max() < 1e-5


# --------------------------------------------------------------------------- shifts


def test_fourier_shift_integer_equals_roll_with_broadcast_shifts(device):
    x = torch.randn(2, 3, 12, 10, dtype=torch.complex64, generator=_generator(4)).to(device)
    shifts = torch.tensor([[[3, -2], [0, 5], [-4, 1]], [[1, 1], [7, -6], [0, 0]]], device=device)
    out = fourier_shift(x, shifts.float())
    for b in range(2):
        for c in range(3):
            dx, dy = (int(v) for v in shifts[b, c])
            ref = torch.roll(x[b, c], shifts=(dy, dx), dims=(-2, -1))
            torch.testing.assert_close(out[b, c], ref, atol=1e-5, rtol=0)
    # One shift broadcast over a batch of images, and the direction convention.
    delta = torch.zeros(4, 8, 8, device=device)
    delta[:, 2, 3] = 1.0
    moved = fourier_shift(delta, torch.tensor([2.0, 1.0], device=device))
    expected = torch.zeros_like(delta)
    expected[:, 3, 5] = 1.0  # row 2 + dy, column 3 + dx
    torch.testing.assert_close(moved, expected, atol=1e-6, rtol=0)


def test_fourier_shift_round_trip_and_real_stays_real(device):
    x = band_limited((4, 32, 32), 0.3, device=device, seed=5)
    shifts = torch.tensor([[0.3, -1.7], [2.5, 0.25], [-0.5, 0.5], [10.1, -3.9]], device=device)
    back = fourier_shift(fourier_shift(x, shifts), -shifts)
    assert _rel_err(back, x) < 1e-4

    real = band_limited((2, 16, 16), 0.5, dtype=torch.float32, device=device, seed=6)
    frac = torch.tensor([[0.5, 0.5], [0.3, -0.8]], device=device)
    out = fourier_shift(real, frac)
    assert out.dtype == torch.float32
    via_complex = fourier_shift(real.to(torch.complex64), frac)
    assert via_complex.imag.abs().max() < 1e-5  # the Nyquist bin is handled symmetrically
    torch.testing.assert_close(out, via_complex.real, atol=1e-5, rtol=0)


def test_fourier_shift_gradcheck():
    x = torch.randn(2, 6, 6, dtype=torch.complex128, generator=_generator(7), requires_grad=True)
    s = torch.tensor([[0.3, -0.6], [1.2, 0.4]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fourier_shift, (x, s), fast_mode=True)


def test_bilinear_shift_integer_equals_roll_in_interior(device):
    x = torch.randn(3, 16, 16, dtype=torch.complex64, generator=_generator(8)).to(device)
    out = bilinear_shift(x, torch.tensor([3.0, -2.0], device=device))
    ref = torch.roll(x, shifts=(-2, 3), dims=(-2, -1))
    torch.testing.assert_close(out[:, :-2, 3:], ref[:, :-2, 3:], atol=0, rtol=0)
    assert out[:, :, :3].abs().max() == 0 and out[:, -2:].abs().max() == 0  # zeros outside


def test_bilinear_shift_half_pixel_ramp_exact_and_matches_grid_sample(device):
    rows, cols = torch.meshgrid(
        torch.arange(12.0, device=device), torch.arange(14.0, device=device), indexing="ij"
    )
    ramp = 0.7 * cols - 0.3 * rows + 2.0
    out = bilinear_shift(ramp, torch.tensor([0.5, -0.5], device=device))
    expected = 0.7 * (cols - 0.5) - 0.3 * (rows + 0.5) + 2.0
    torch.testing.assert_close(out[:-1, 1:], expected[:-1, 1:], atol=1e-5, rtol=0)

    # Same pixel-unit semantics as grid_sample(align_corners=True, zeros padding).
    x = torch.randn(2, 9, 11, generator=_generator(9)).to(device)
    shifts = torch.tensor([[1.3, -0.6], [-2.25, 3.7]], device=device)
    h, w = x.shape[-2:]
    gy, gx = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    grid = torch.stack(
        [
            2 * (gx - shifts[:, 0, None, None]) / (w - 1) - 1,
            2 * (gy - shifts[:, 1, None, None]) / (h - 1) - 1,
        ],
        dim=-1,
    )
    ref = F.grid_sample(x[:, None], grid, mode="bilinear", align_corners=True)[:, 0]
    torch.testing.assert_close(bilinear_shift(x, shifts), ref, atol=1e-5, rtol=0)


def test_bilinear_shift_gradcheck():
    x = torch.randn(2, 5, 6, dtype=torch.complex128, generator=_generator(10), requires_grad=True)
    s = torch.tensor([[0.3, -0.6], [1.2, 0.4]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(bilinear_shift, (x, s))


# --------------------------------------------------------------------------- patches


@pytest.mark.parametrize("method", ["bilinear", "fourier"])
@pytest.mark.parametrize("n", [8, 7])
def test_extract_patches_integer_aligned_equals_slicing(device, method, n):
    canvas = torch.randn(40, 36, dtype=torch.complex64, generator=_generator(11)).to(device)
    starts = torch.tensor([[3, 5], [20, 10], [0, 0], [28, 32]], dtype=torch.float64)
    centres = starts + (n - 1) / 2
    patches = extract_patches(canvas, centres, n, method=method)
    assert patches.shape == (4, n, n) and patches.dtype == torch.complex64
    for k, (x0, y0) in enumerate(starts.long().tolist()):
        torch.testing.assert_close(patches[k], canvas[y0 : y0 + n, x0 : x0 + n], atol=2e-6, rtol=0)
    # Batched canvases, one centre each.
    batched = extract_patches(canvas.expand(4, -1, -1), centres, n, method=method)
    torch.testing.assert_close(batched, patches, atol=2e-6, rtol=0)


def test_extract_patches_fourier_fractional_matches_full_fourier_shift(device):
    n, size = 16, 64
    canvas = band_limited((size, size), 0.25, device=device, seed=12)
    centres = torch.tensor([[30.3, 28.8], [32.5, 32.5], [25.2, 36.9]], dtype=torch.float64)
    patches = extract_patches(canvas, centres, n, method="fourier")
    for k, centre in enumerate(centres):
        start = centre - (n - 1) / 2
        base = torch.floor(start)
        ref = fourier_shift(canvas, (base - start).float().to(device))
        x0, y0 = (int(v) for v in base)
        assert _rel_err(patches[k], ref[y0 : y0 + n, x0 : x0 + n]) < 3e-3
    # A localized blob held wholly in the window is reproduced to float32 precision.
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((cols - 31.2) ** 2 + (rows - 32.6) ** 2) / (2 * 2.5**2)).to(device)
    patch = extract_patches(blob, torch.tensor([[31.9, 31.4]]), n, method="fourier")[0]
    ref = fourier_shift(blob, torch.tensor([-0.4, 0.1], device=device))[24:40, 24:40]
    assert _rel_err(patch, ref) < 1e-5


@pytest.mark.parametrize("method", ["bilinear", "fourier"])
def test_scatter_is_the_adjoint_of_extract(method):
    canvas = torch.randn(30, 34, dtype=torch.complex128, generator=_generator(13))
    centres = torch.tensor([[10.3, 12.7], [20.5, 15.0], [1.2, 28.9], [33.5, -1.5]])
    patches = torch.randn(4, 8, 8, dtype=torch.complex128, generator=_generator(14))
    lhs = torch.vdot(
        extract_patches(canvas, centres, 8, method=method).flatten(), patches.flatten()
    )
    rhs = torch.vdot(
        canvas.flatten(), scatter_patches(patches, centres, (30, 34), method=method).flatten()
    )
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


def test_extract_patches_gradcheck_in_canvas_and_centres():
    canvas = torch.randn(7, 8, dtype=torch.complex128, generator=_generator(15), requires_grad=True)
    centres = torch.tensor([[3.3, 3.6], [4.2, 2.9]], dtype=torch.float64, requires_grad=True)
    for method in ("bilinear", "fourier"):
        fn = lambda c, p, m=method: extract_patches(c, p, 3, method=m, pad=2)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (canvas, centres), fast_mode=True)


def test_extract_patches_bad_shapes_raise():
    with pytest.raises(ValueError, match="centres"):
        extract_patches(torch.zeros(8, 8), torch.zeros(3, 3), 4)
    with pytest.raises(ValueError, match="method"):
        extract_patches(torch.zeros(8, 8), torch.zeros(3, 2), 4, method="nearest")


def _raster(lo: float, hi: float, step: float, offset: float = 0.0) -> torch.Tensor:
    axis = torch.arange(lo, hi, step, dtype=torch.float64) + offset
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


def test_stitch_integer_aligned_bilinear_recovers_object(device):
    n, size = 16, 64
    obj = band_limited((size, size), 0.2, device=device, seed=16)
    centres = _raster(12, 52, 6, offset=(n - 1) / 2 % 1)  # step < N, integer-aligned starts
    patches = extract_patches(obj, centres, n)
    canvas, weight = stitch_patches(patches, centres, (size, size))
    inside = weight > 0
    assert inside[20:44, 20:44].all() and not inside[0, 0]
    assert _rel_err(canvas[inside], obj[inside]) < 1e-3
    assert canvas[~inside].abs().max() == 0

    probe = band_limited((n, n), 0.1, device=device, seed=17) * circular_mask(n, device=device)
    weighted, _ = stitch_patches(patches, centres, (size, size), weights=probe.abs().square())
    covered = weight > 0.5 * weight.max()
    assert _rel_err(weighted[covered], obj[covered]) < 1e-3


@pytest.mark.parametrize("method", ["fourier", "bilinear"])
def test_stitch_fractional_positions_small_error(device, method):
    n, size = 16, 64
    obj = band_limited((size, size), 0.08, device=device, seed=18)
    centres = _raster(14, 50, 5) + torch.tensor([0.37, -0.21], dtype=torch.float64)
    patches = extract_patches(obj, centres, n, method=method)
    axis = torch.arange(n, device=device) - (n - 1) / 2
    gauss = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * 4.0**2))
    canvas, _ = stitch_patches(patches, centres, (size, size), weights=gauss, method=method)
    tolerance = {"fourier": 5e-3, "bilinear": 5e-2}[method]
    assert _rel_err(canvas[20:44, 20:44], obj[20:44, 20:44]) < tolerance


@pytest.mark.parametrize("method", ["bilinear", "fourier"])
def test_accumulator_batches_equal_one_batch_and_clip_outside(device, method):
    n, size = 8, 40
    patches = torch.randn(37, n, n, dtype=torch.complex64, generator=_generator(19)).to(device)
    centres = torch.rand(37, 2, generator=_generator(20), dtype=torch.float64) * 50 - 5
    weights = torch.rand(37, n, n, generator=_generator(21)).to(device)
    one = stitch_patches(patches, centres, (size, size), weights=weights, method=method)
    many = stitch_patches(
        patches, centres, (size, size), weights=weights, method=method, batch_size=5
    )
    torch.testing.assert_close(many[0], one[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(many[1], one[1], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(one[0]).all() and one[1].shape == (size, size)

    acc = PatchAccumulator((size, size), n, device=device, method=method)
    far_away = torch.tensor([[-100.0, 5.0], [5.0, 1e4]])
    acc.add(patches[:2], far_away)  # wholly outside: dropped, no crash
    canvas, weight = acc.result()
    assert canvas.abs().max() == 0 and weight.abs().max() == 0


def test_accumulator_rejects_bad_weights():
    acc = PatchAccumulator((20, 20), 4)
    with pytest.raises(ValueError, match="weights"):
        acc.add(torch.zeros(2, 4, 4, dtype=torch.complex64), torch.zeros(2, 2), torch.ones(3, 3))


# --------------------------------------------------------------------------- group canvas


def _consistent_group(obj, centre, offsets, n):
    """Patches cut (band-limited exactly) from ``obj`` at ``centre + offsets``."""
    out = []
    for offset in offsets:
        start = centre + offset - (n - 1) / 2
        base = torch.round(start)
        moved = fourier_shift(obj, (base - start).to(obj.real.dtype))
        x0, y0 = (int(v) for v in base)
        out.append(moved[y0 : y0 + n, x0 : x0 + n])
    return torch.stack(out)[None]


@pytest.mark.parametrize("method", ["fourier", "bilinear"])
def test_group_canvas_round_trip_integer_offsets_exact(device, method):
    n, m = 16, 28
    obj = band_limited((64, 64), 0.25, device=device, seed=22)
    offsets = torch.tensor([[-4.0, -4.0], [4.0, -4.0], [-4.0, 4.0], [4.0, 4.0]])
    patches = _consistent_group(obj, torch.tensor([31.5, 31.5]), offsets, n)
    offsets = offsets[None].to(device)
    canvas = patches_to_group_canvas(patches, offsets, m, method=method)
    assert canvas.shape == (1, m, m)
    # The group canvas is the object around the group centre (frame pixel (m-1)/2).
    assert _rel_err(canvas[0, 2:26, 2:26], obj[20:44, 20:44]) < 1e-5
    back = group_canvas_to_patches(canvas, offsets, n, method=method)
    assert _rel_err(back, patches) < 1e-5


@pytest.mark.parametrize("method", ["fourier", "bilinear"])
def test_group_canvas_round_trip_fractional_offsets_interior(device, method):
    n, m = 32, 48
    obj = band_limited((96, 96), 0.05, dtype=torch.complex128, device=device, seed=23)
    offsets = torch.tensor(
        [[-3.3, -4.1], [4.7, -3.5], [-4.2, 3.9], [3.6, 4.4]], dtype=torch.float64
    )
    patches = _consistent_group(obj, torch.tensor([47.5, 47.5], dtype=torch.float64), offsets, n)
    canvas = patches_to_group_canvas(patches, offsets[None].to(device), m, method=method)
    back = group_canvas_to_patches(canvas, offsets[None].to(device), n, method=method)
    err = (back - patches)[..., 8:-8, 8:-8].abs().max() / patches.abs().max()
    # Sub-pixel translation of hard-edged patches is not exact: the measured interior error is
    # ~2e-2 (Fourier ringing from the patch edges) and ~1e-2 (bilinear blur).
    assert err < 4e-2


def test_group_canvas_averages_inconsistent_patches(device):
    n, m = 8, 12
    a = torch.randn(n, n, dtype=torch.complex64, generator=_generator(24)).to(device)
    b = torch.randn(n, n, dtype=torch.complex64, generator=_generator(25)).to(device)
    patches = torch.stack([a, b])[None]
    offsets = torch.zeros(1, 2, 2, device=device)
    for method in ("fourier", "bilinear"):
        canvas = patches_to_group_canvas(patches, offsets, m, method=method)
        torch.testing.assert_close(canvas[0, 2:10, 2:10], (a + b) / 2, atol=1e-5, rtol=0)
        assert canvas[0, :2].abs().max() < 1e-5  # uncovered frame stays zero
        back = group_canvas_to_patches(canvas, offsets, n, method=method)
        torch.testing.assert_close(back[0, 1], (a + b) / 2, atol=1e-5, rtol=0)


def test_group_canvas_gradients_flow():
    patches = torch.randn(1, 4, 4, 4, dtype=torch.complex128, generator=_generator(26))
    patches.requires_grad_(True)
    # Fractional parts chosen so that no bilinear coverage sums to exactly 1 (the clamp's kink).
    offsets = torch.tensor([[[-1.4, 0.2], [1.15, -0.65], [0.3, 1.45], [0.55, 0.9]]]).double()
    offsets.requires_grad_(True)
    for method in ("fourier", "bilinear"):

        def round_trip(p, o, m=method):
            canvas = patches_to_group_canvas(p, o, 8, method=m)
            return group_canvas_to_patches(canvas, o, 4, method=m)

        assert torch.autograd.gradcheck(round_trip, (patches, offsets), fast_mode=True)


# --------------------------------------------------------------------------- forward model


def test_diffraction_intensity_parseval_and_gradcheck(device):
    n = 8
    patches = torch.randn(3, n, n, dtype=torch.complex64, generator=_generator(27)).to(device)
    probe = torch.randn(n, n, dtype=torch.complex64, generator=_generator(28)).to(device)
    intensity = diffraction_intensity(patches, probe)
    assert intensity.dtype == torch.float32 and intensity.shape == (3, n, n)
    torch.testing.assert_close(
        intensity.sum(dim=(-2, -1)),
        (probe * patches).abs().square().sum(dim=(-2, -1)),
        rtol=1e-5,
        atol=0,
    )
    amplitude = diffraction_amplitude(patches, probe)
    torch.testing.assert_close(amplitude, intensity.sqrt(), rtol=1e-5, atol=1e-5)

    p64 = torch.randn(2, 4, 4, dtype=torch.complex128, generator=_generator(29), requires_grad=True)
    q64 = torch.randn(4, 4, dtype=torch.complex128, generator=_generator(30), requires_grad=True)
    assert torch.autograd.gradcheck(diffraction_intensity, (p64, q64), fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda p, q: diffraction_amplitude(p, q, smoothing_sigma=0.8), (p64, q64), fast_mode=True
    )


def test_illuminate_mask_and_smoothing(device):
    n = 16
    mask = circular_mask(n, device=device)
    assert mask.shape == (n, n) and mask.device.type == device.type
    torch.testing.assert_close(mask, mask.flip(0))
    torch.testing.assert_close(mask, mask.T)
    assert mask[n // 2, 0] == 1 and mask[0, 0] == 0  # disk of radius N/2 about (N-1)/2
    assert circular_mask(n, radius=3).sum() == 32

    probe = torch.ones(n, n, dtype=torch.complex64, device=device) * (1 + 2j)
    patches = torch.ones(2, n, n, dtype=torch.complex64, device=device)
    wave = illuminate(patches, probe, probe_mask=mask)
    torch.testing.assert_close(wave[0], probe * mask)

    smooth = illuminate(patches, probe, smoothing_sigma=1.5)
    torch.testing.assert_close(smooth[0, 5:11, 5:11], probe[5:11, 5:11], atol=1e-5, rtol=0)
    assert smooth[0, 0, 0].abs() < probe[0, 0].abs()  # zero-padded edges are blurred down
    delta = torch.zeros(n, n, device=device)
    delta[8, 8] = 1.0
    blurred = gaussian_blur(delta, 1.0)
    torch.testing.assert_close(blurred.sum(), torch.tensor(1.0, device=device))
    torch.testing.assert_close(blurred, blurred.T)
    with pytest.raises(ValueError, match="probe"):
        illuminate(patches, torch.ones(8, 8, dtype=torch.complex64, device=device))


# --------------------------------------------------------------------------- losses


def test_poisson_nll_gradient_analytic_and_gradcheck(device):
    counts = torch.poisson(torch.full((2, 4, 4), 5.0), generator=_generator(31)).double()
    pred = torch.rand(2, 4, 4, generator=_generator(32), dtype=torch.float64) * 8 + 0.5
    pred = pred.to(device).requires_grad_(True)
    counts = counts.to(device)
    assert torch.autograd.gradcheck(lambda p: poisson_nll(p, counts, eps=0.0), (pred,))
    (grad,) = torch.autograd.grad(poisson_nll(pred, counts, eps=0.0, reduction="sum"), pred)
    torch.testing.assert_close(grad, 1 - counts / pred.detach())


def test_poisson_nll_minimum_full_and_reductions():
    counts = torch.poisson(torch.full((3, 8, 8), 20.0), generator=_generator(33))
    scales = torch.linspace(0.5, 1.5, 101)
    values = torch.stack([poisson_nll(counts * s + 1e-3, counts) for s in scales])
    assert abs(float(scales[values.argmin()]) - 1.0) < 0.011

    k, mu = counts.double(), torch.full((3, 8, 8), 17.5, dtype=torch.float64)
    full = poisson_nll(mu, k, eps=0.0, full=True, reduction="none")
    expected = -stats.poisson.logpmf(k.numpy(), mu.numpy())
    np.testing.assert_allclose(full.numpy(), expected, rtol=1e-10)

    per = poisson_nll(mu, k, reduction="per_pattern")
    assert per.shape == (3,)
    torch.testing.assert_close(per.sum(), poisson_nll(mu, k, reduction="sum"))
    torch.testing.assert_close(per.sum() / k.numel(), poisson_nll(mu, k))
    with pytest.raises(ConfigError, match="reduction"):
        poisson_nll(mu, k, reduction="median")
    with pytest.raises(ValueError, match="shapes"):
        poisson_nll(mu, k[:2])


def test_amplitude_and_realspace_mae(device):
    measured = torch.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    pred = torch.tensor([[1.5, 2.0], [2.0, 4.5]], device=device, requires_grad=True)
    loss = amplitude_mae(pred, measured)
    assert math.isclose(float(loss.detach()), (0.5 + 0 + 1 + 0.5) / 4, rel_tol=1e-6)
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad[0, 0] > 0 and grad[1, 0] < 0 and grad[1, 1] > 0  # points away from the data

    a = torch.tensor([[1 + 1j, 0j], [2j, 3 + 0j]], dtype=torch.complex64, device=device)
    b = torch.tensor([[1 + 0j, 3 + 4j], [2j, 0j]], dtype=torch.complex64, device=device)
    assert math.isclose(float(realspace_mae(a, b)), (1 + 5 + 0 + 3) / 4, rel_tol=1e-6)
    assert realspace_mae(a[None], b[None], reduction="per_pattern").shape == (1,)


def test_twin_symmetry_tells_flat_focused_probes_from_defocused_ones():
    """A flat-phase centrosymmetric probe equals its twin (1); a defocused or aberrated one
    does not (about 0.5); neither a constant phase, a whole-pixel shift nor a tilt by a whole
    Fourier pixel changes it, and a bad probe is one message."""
    from ptychopinn.data.simulate import make_probe
    from ptychopinn.physics.twin import TWIN_SYMMETRIC, twin_symmetry

    disk, gaussian = make_probe(64, kind="disk"), make_probe(64, kind="gaussian")
    assert twin_symmetry(disk) > 0.99 and twin_symmetry(gaussian) > 0.99
    for probe in (make_probe(64), make_probe(64, kind="zoneplate", aberration=2.0)):
        assert twin_symmetry(probe) < 0.7
    assert twin_symmetry(make_probe(64, kind="disk", curvature=3.0)) < TWIN_SYMMETRIC
    rows, cols = np.indices(disk.shape)
    moved = np.roll(disk, (3, -5), axis=(0, 1)) * np.exp(1.3j)
    tilted = disk * np.exp(2j * np.pi * (2 * rows + 3 * cols) / 64)
    assert twin_symmetry(moved) > 0.99 and twin_symmetry(tilted) > 0.99
    with pytest.raises(ValueError, match="energy"):
        twin_symmetry(np.zeros((8, 8)))


def test_training_warns_about_a_probe_equal_to_its_twin(caplog):
    from ptychopinn.data.simulate import simulate_dataset
    from ptychopinn.workflows.train import warn_twin_symmetric_probes

    focused = simulate_dataset(N=32, object_size=64, step=6, probe_kind="disk", seed=1)
    defocused = simulate_dataset(N=32, object_size=64, step=6, seed=1)
    with caplog.at_level("WARNING", logger="ptychopinn.workflows.train"):
        warn_twin_symmetric_probes([defocused, focused])
    (warned,) = [r.getMessage() for r in caplog.records]
    assert warned.startswith(f"{focused.source}: the probe is centrosymmetric")
    assert "--refine auto" in warned
