"""Differentiable ptychographic forward model: illumination and far-field propagation.

Far-field convention (used project-wide): ``F = fftshift(fft2(ifftshift(psi), norm="ortho"))``
over the last two dimensions, so that ``sum |F|^2 == sum |psi|^2`` (Parseval) and the zero
frequency sits at index ``N // 2``. Measured counts correspond to ``|F|^2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "far_field",
    "illuminate",
    "circular_mask",
    "gaussian_blur",
    "diffraction_intensity",
    "diffraction_amplitude",
]

_DIMS = (-2, -1)


def far_field(psi: Tensor) -> Tensor:
    """Far-field (Fraunhofer) wave of exit waves ``psi`` (..., N, N), centred and unitary."""
    spectrum = torch.fft.fft2(torch.fft.ifftshift(psi, dim=_DIMS), norm="ortho")
    return torch.fft.fftshift(spectrum, dim=_DIMS)


def circular_mask(
    N: int,
    radius: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Hard disk (N, N) of ones within ``radius`` (default N/2) of the patch centre (N-1)/2.

    The centre follows the patch coordinate contract, so the mask is symmetric on the grid.
    """
    if radius is None:
        radius = N / 2.0
    axis = torch.arange(N, device=device, dtype=torch.float64) - (N - 1) / 2.0
    r2 = axis[:, None] ** 2 + axis[None, :] ** 2
    return (r2 <= float(radius) ** 2).to(dtype)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    half = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-half, half + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (..., H, W), real or complex, zero padding ("same" size)."""
    if sigma <= 0:
        return x
    if x.is_complex():
        return torch.complex(gaussian_blur(x.real, sigma), gaussian_blur(x.imag, sigma))
    kernel = _gaussian_kernel(float(sigma), x.dtype, x.device)
    half = kernel.shape[0] // 2
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    images = x.reshape(-1, 1, h, w)
    # Physics stays in the input's precision: under a bfloat16 autocast the convolutions
    # would come back in bfloat16, which complex tensors cannot hold.
    with torch.autocast(x.device.type, enabled=False):
        images = F.conv2d(images, kernel.view(1, 1, 1, -1), padding=(0, half))
        images = F.conv2d(images, kernel.view(1, 1, -1, 1), padding=(half, 0))
    return images.reshape(*lead, h, w)


def illuminate(
    patches: Tensor,
    probe: Tensor,
    *,
    probe_mask: Tensor | None = None,
    smoothing_sigma: float = 0.0,
) -> Tensor:
    """Exit waves ``(blur(probe) * probe_mask) * patches``; probe (N, N) or broadcastable.

    Smoothing (Gaussian, ``smoothing_sigma`` pixels) is applied to the probe before masking.
    """
    if probe.shape[-2:] != patches.shape[-2:]:
        raise ValueError(
            f"illuminate: probe must be {tuple(patches.shape[-2:])} to match the patches; "
            f"found {tuple(probe.shape)}"
        )
    probe = gaussian_blur(probe, smoothing_sigma)
    if probe_mask is not None:
        mask_dtype = probe_mask.dtype if probe_mask.is_complex() else probe.real.dtype
        probe = probe * probe_mask.to(device=probe.device, dtype=mask_dtype)
    return probe * patches


def _abs2(x: Tensor) -> Tensor:
    """|x|^2 with a gradient that is well defined at zero."""
    if x.is_complex():
        return x.real.square() + x.imag.square()
    return x.square()


def diffraction_intensity(
    patches: Tensor,
    probe: Tensor,
    *,
    probe_mask: Tensor | None = None,
    smoothing_sigma: float = 0.0,
) -> Tensor:
    """Far-field intensity ``|far_field(illuminate(patches, probe))|^2`` (expected counts)."""
    exit_wave = illuminate(patches, probe, probe_mask=probe_mask, smoothing_sigma=smoothing_sigma)
    return _abs2(far_field(exit_wave))


def diffraction_amplitude(
    patches: Tensor,
    probe: Tensor,
    *,
    probe_mask: Tensor | None = None,
    smoothing_sigma: float = 0.0,
    eps: float = 1e-12,
) -> Tensor:
    """Far-field amplitude ``sqrt(intensity + eps)``; ``eps`` keeps the gradient finite at 0."""
    intensity = diffraction_intensity(
        patches, probe, probe_mask=probe_mask, smoothing_sigma=smoothing_sigma
    )
    return torch.sqrt(intensity + eps)
