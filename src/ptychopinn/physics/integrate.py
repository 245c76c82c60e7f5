"""Least-squares integration of a phase-gradient field (Poisson equation, Neumann borders).

A single diffraction pattern does not tell the level of a phase plateau wider than the probe
(a constant phase leaves the pattern unchanged), but it does tell the phase's edges and
slopes. A network that predicts phase gradients, integrated over the whole object, recovers
such plateaus from the edges the scan crosses; see ``ModelConfig.phase_head``.

Convention: ``gx[..., i, j] ~ phi[..., i, j + 1] - phi[..., i, j]`` and
``gy[..., i, j] ~ phi[..., i + 1, j] - phi[..., i, j]`` (forward differences; the last
column of ``gx`` and the last row of ``gy`` point outside the grid and are ignored). The
returned ``phi`` minimises ``sum (D phi - g)^2`` and has zero mean. The Neumann Laplacian is
diagonalised by the cosine transform, computed here as the FFT of the mirrored field, so the
solve is exact, differentiable and costs two FFTs of twice the size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["integrate_gradient", "object_from_gradients", "phase_gradient"]


def _divergence(gx: Tensor, gy: Tensor) -> Tensor:
    """Backward-difference divergence of forward-difference gradients (zero flux outside)."""
    gx = gx[..., :, :-1]
    gy = gy[..., :-1, :]
    div = torch.zeros(*gx.shape[:-1], gx.shape[-1] + 1, dtype=gx.dtype, device=gx.device)
    div[..., :, :-1] += gx
    div[..., :, 1:] -= gx
    div_y = torch.zeros_like(div)
    div_y[..., :-1, :] += gy
    div_y[..., 1:, :] -= gy
    return div + div_y


def _laplacian_eigenvalues(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    ky = torch.arange(2 * h, dtype=dtype, device=device)
    kx = torch.arange(2 * w, dtype=dtype, device=device)
    ey = 2 * torch.cos(math.pi * ky / h) - 2
    ex = 2 * torch.cos(math.pi * kx / w) - 2
    eig = ey[:, None] + ex[None, :]
    eig[0, 0] = 1.0  # the mean: set to zero after the division
    return eig


def integrate_gradient(gx: Tensor, gy: Tensor) -> Tensor:
    """Zero-mean ``phi`` (..., H, W) whose forward differences best match ``gx``, ``gy``."""
    if gx.shape != gy.shape or gx.ndim < 2:
        raise ValueError(
            f"integrate_gradient: gx and gy must have one shape (..., H, W); found "
            f"{tuple(gx.shape)} and {tuple(gy.shape)}"
        )
    work = torch.float64 if gx.dtype == torch.float64 else torch.float32
    div = _divergence(gx.to(work), gy.to(work))
    h, w = div.shape[-2:]
    mirrored = torch.cat([div, div.flip(-1)], dim=-1)
    mirrored = torch.cat([mirrored, mirrored.flip(-2)], dim=-2)
    spectrum = torch.fft.fft2(mirrored)
    eig = _laplacian_eigenvalues(h, w, work, div.device)
    spectrum = spectrum / eig
    spectrum[..., 0, 0] = 0
    return torch.fft.ifft2(spectrum).real[..., :h, :w].to(gx.dtype)


def object_from_gradients(amplitude: Tensor, gradients: Tensor) -> Tensor:
    """Complex object (..., H, W) from an amplitude map (real part used, negatives clipped to
    zero) and phase gradients packed as ``gx + i gy``, integrated by
    :func:`integrate_gradient`."""
    phase = integrate_gradient(gradients.real, gradients.imag)
    return torch.polar(amplitude.real.clamp_min(0), phase)


def _wrap(x: Tensor) -> Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def phase_gradient(phase: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences ``(gx, gy)`` of ``phase`` (..., H, W), wrapped to [-pi, pi); the
    last column of ``gx`` and last row of ``gy`` are zero. Inverse of
    :func:`integrate_gradient` up to the mean for phases without steps above pi."""
    gx = torch.nn.functional.pad(_wrap(phase[..., :, 1:] - phase[..., :, :-1]), (0, 1))
    gy = torch.nn.functional.pad(_wrap(phase[..., 1:, :] - phase[..., :-1, :]), (0, 0, 0, 1))
    return gx, gy
