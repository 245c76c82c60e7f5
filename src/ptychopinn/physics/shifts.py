"""Sub-pixel image translation (Fourier and bilinear), batched and differentiable.

Convention shared by every function here: ``shifts[..., 0] = dx`` (columns) and
``shifts[..., 1] = dy`` (rows), in pixels; the content moves by ``+dx`` columns and ``+dy``
rows, i.e. ``out[r, c] = x[r - dy, c - dx]``. Leading dimensions of ``x[..., H, W]`` and
``shifts[..., 2]`` broadcast against each other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["fourier_shift", "bilinear_shift"]


def _real_dtype(x: Tensor) -> torch.dtype:
    """The real dtype matching ``x`` (float32 for complex64, float64 for complex128)."""
    return x.real.dtype if x.is_complex() else x.dtype


def _check_shift_inputs(x: Tensor, shifts: Tensor, name: str) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name}: x must have shape (..., H, W); found shape {tuple(x.shape)}")
    if shifts.ndim < 1 or shifts.shape[-1] != 2:
        raise ValueError(
            f"{name}: shifts must have shape (..., 2) as [dx, dy]; found shape "
            f"{tuple(shifts.shape)}"
        )


def _phase_ramp(n: int, d: Tensor) -> Tensor:
    """Fourier factor of a translation by ``d`` pixels along an axis of length ``n``.

    Returns ``(..., n)`` complex, in ``torch.fft.fftfreq`` order. At the Nyquist bin of an even
    ``n`` only the cosine is kept: it is the symmetric (real-preserving) choice and still equals
    ``(-1)**d`` for integer shifts, so integer shifts stay exact rolls.
    """
    k = torch.fft.fftfreq(n, device=d.device, dtype=d.dtype)
    phase = (-2.0 * math.pi) * d[..., None] * k
    sin = torch.sin(phase)
    if n % 2 == 0:
        keep = torch.ones(n, device=d.device, dtype=d.dtype)
        keep[n // 2] = 0.0
        sin = sin * keep
    return torch.complex(torch.cos(phase), sin)


def fourier_shift(x: Tensor, shifts: Tensor) -> Tensor:
    """Translate ``x`` (..., H, W) by ``shifts`` (..., 2) = [dx, dy] pixels, periodically.

    Band-limited (sinc) interpolation through a phase ramp on the 2-D FFT: exact for integer
    shifts (equals ``torch.roll``) and invertible by the opposite shift for content without a
    Nyquist component. Real input gives real output. Differentiable in ``x`` and ``shifts``.
    """
    _check_shift_inputs(x, shifts, "fourier_shift")
    real_dtype = _real_dtype(x)
    shifts = shifts.to(device=x.device, dtype=real_dtype)
    h, w = x.shape[-2], x.shape[-1]
    ramp_y = _phase_ramp(h, shifts[..., 1])[..., :, None]
    ramp_x = _phase_ramp(w, shifts[..., 0])[..., None, :]
    spectrum = torch.fft.fft2(x, dim=(-2, -1))
    out = torch.fft.ifft2(spectrum * ramp_y * ramp_x, dim=(-2, -1))
    return out if x.is_complex() else out.real


def _gather_windows(images: Tensor, x0: Tensor, y0: Tensor, height: int, width: int) -> Tensor:
    """Integer crops ``images[b, y0+i, x0+j]`` with zeros outside the image.

    images: (B, H, W); x0, y0: (B, M) integer origins. Returns (B, M, height, width).
    """
    b, h, w = images.shape
    m = x0.shape[1]
    rows = y0[..., None] + torch.arange(height, device=images.device)
    cols = x0[..., None] + torch.arange(width, device=images.device)
    valid = ((rows >= 0) & (rows < h))[..., :, None] & ((cols >= 0) & (cols < w))[..., None, :]
    index = rows.clamp(0, h - 1)[..., :, None] * w + cols.clamp(0, w - 1)[..., None, :]
    values = images.reshape(b, h * w).gather(1, index.reshape(b, -1))
    return values.reshape(b, m, height, width).masked_fill(~valid, 0)


def _split_coordinate(coord: Tensor) -> tuple[Tensor, Tensor]:
    """Integer part (floor, int64) and fractional part in [0, 1) of a coordinate tensor."""
    base = torch.floor(coord)
    return base.to(torch.int64), coord - base


def _bilinear_combine(windows: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
    """Bilinear interpolation of (..., h+1, w+1) windows at fractional offsets (fx, fy).

    fx, fy: broadcastable to windows.shape[:-2], real. Returns (..., h, w).
    """
    fx = fx[..., None, None]
    fy = fy[..., None, None]
    top = windows[..., :-1, :-1] * (1 - fx) + windows[..., :-1, 1:] * fx
    bottom = windows[..., 1:, :-1] * (1 - fx) + windows[..., 1:, 1:] * fx
    return top * (1 - fy) + bottom * fy


def bilinear_shift(x: Tensor, shifts: Tensor) -> Tensor:
    """Translate ``x`` (..., H, W) by ``shifts`` (..., 2) = [dx, dy] with bilinear interpolation.

    Same pixel-unit semantics as ``grid_sample(align_corners=True, padding_mode="zeros")``
    (pixel centres at integers, zeros outside), implemented as a gather so that integer shifts
    are exact and complex tensors are interpolated directly. Differentiable in both inputs.
    """
    _check_shift_inputs(x, shifts, "bilinear_shift")
    real_dtype = _real_dtype(x)
    h, w = x.shape[-2], x.shape[-1]
    lead = torch.broadcast_shapes(x.shape[:-2], shifts.shape[:-1])
    images = x.expand(*lead, h, w).reshape(-1, h, w)
    flat_shifts = shifts.to(x.device).expand(*lead, 2).reshape(-1, 2)
    # out[r, c] = x[r - dy, c - dx]: the source window starts at (-dy, -dx).
    ix, fx = _split_coordinate(-flat_shifts[:, 0])
    iy, fy = _split_coordinate(-flat_shifts[:, 1])
    windows = _gather_windows(images, ix[:, None], iy[:, None], h + 1, w + 1)[:, 0]
    out = _bilinear_combine(windows, fx.to(real_dtype), fy.to(real_dtype))
    return out.reshape(*lead, h, w)
