"""The differentiable physics in TensorFlow, operator for operator the twin of
:mod:`ptychopinn.physics` (same conventions, same shapes, float32 / complex64).

Far field: ``fftshift(fft2(ifftshift(psi)) / N)`` over the last two axes (unitary). Shifts:
``[dx, dy]`` pixels, content moves by ``+dx`` columns and ``+dy`` rows, band-limited (Fourier)
with only the cosine kept at the Nyquist bin. The group canvas places the patches of a
group at their offsets and averages them where they overlap, exactly as
:func:`ptychopinn.physics.patches.patches_to_group_canvas` does. The parity tests compare
every function here with its PyTorch twin. :func:`integrate_gradient` is the twin of
:func:`ptychopinn.physics.integrate.integrate_gradient` (same convention and solve).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ptychopinn.physics import forward
from ptychopinn.physics.integrate import _laplacian_eigenvalues
from ptychopinn.physics.patches import _frame_margins
from ptychopinn.tf_backend import import_tensorflow

tf = import_tensorflow()

_AXES = (-2, -1)


def far_field(psi):
    """Far-field wave of exit waves ``psi`` (..., N, N) complex64, centred and unitary."""
    h, w = psi.shape[-2], psi.shape[-1]
    spectrum = tf.signal.fft2d(tf.signal.ifftshift(psi, axes=_AXES))
    return tf.signal.fftshift(spectrum, axes=_AXES) / tf.cast(math.sqrt(h * w), psi.dtype)


def circular_mask(N: int, radius: float | None = None) -> np.ndarray:
    """The disk of :func:`ptychopinn.physics.forward.circular_mask`, as float32 numpy."""
    return forward.circular_mask(N, radius).numpy()


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur (zero padding, same size) of (..., H, W), real or complex."""
    if sigma <= 0:
        return x
    if x.dtype.is_complex:
        return tf.complex(
            gaussian_blur(tf.math.real(x), sigma), gaussian_blur(tf.math.imag(x), sigma)
        )
    kernel = forward._gaussian_kernel(float(sigma), torch.float64, torch.device("cpu"))
    kernel = tf.constant(kernel.numpy(), dtype=x.dtype)
    k = int(kernel.shape[0])
    shape = tf.shape(x)
    images = tf.reshape(x, [-1, shape[-2], shape[-1], 1])
    images = tf.nn.conv2d(images, tf.reshape(kernel, [1, k, 1, 1]), 1, "SAME")
    images = tf.nn.conv2d(images, tf.reshape(kernel, [k, 1, 1, 1]), 1, "SAME")
    return tf.reshape(images, shape)


def illuminate(patches, probe, *, probe_mask=None, smoothing_sigma: float = 0.0):
    """Exit waves ``(blur(probe) * probe_mask) * patches``; probe broadcastable to patches."""
    probe = gaussian_blur(probe, smoothing_sigma)
    if probe_mask is not None:
        probe = probe * tf.cast(probe_mask, probe.dtype)
    return probe * patches


def poisson_nll(pred_intensity, counts, eps: float = 1e-8):
    """Mean Poisson negative log-likelihood ``pred - counts * log(pred + eps)``."""
    return tf.reduce_mean(pred_intensity - counts * tf.math.log(pred_intensity + eps))


def poisson_deviance(pred_counts, counts):
    """Mean Poisson NLL minus its value at the perfect fit (the PyTorch module's loss)."""
    return poisson_nll(pred_counts, counts) - poisson_nll(counts, counts)


def amplitude_mae(pred_amplitude, measured_amplitude):
    """Mean absolute error between predicted and measured diffraction amplitudes."""
    return tf.reduce_mean(tf.abs(pred_amplitude - measured_amplitude))


def realspace_mae(pred_patches, true_patches):
    """Mean modulus of the complex difference between predicted and label patches."""
    return tf.reduce_mean(tf.abs(pred_patches - true_patches))


def _phase_ramp(n: int, d):
    """Fourier factor (..., n) of a translation by ``d`` (...) pixels, fftfreq order."""
    k = np.fft.fftfreq(n).astype(np.float32)
    phase = (-2.0 * math.pi) * d[..., None] * k
    sin = tf.sin(phase)
    if n % 2 == 0:
        keep = np.ones(n, dtype=np.float32)
        keep[n // 2] = 0.0
        sin = sin * keep
    return tf.complex(tf.cos(phase), sin)


def fourier_shift(x, shifts):
    """Translate ``x`` (..., H, W) by ``shifts`` (..., 2) = [dx, dy] pixels, periodically."""
    complex_input = x.dtype.is_complex
    xc = x if complex_input else tf.complex(x, tf.zeros_like(x))
    h, w = x.shape[-2], x.shape[-1]
    shifts = tf.cast(shifts, tf.float32)
    ramp_y = _phase_ramp(h, shifts[..., 1])[..., :, None]
    ramp_x = _phase_ramp(w, shifts[..., 0])[..., None, :]
    out = tf.signal.ifft2d(tf.signal.fft2d(xc) * ramp_y * ramp_x)
    return out if complex_input else tf.math.real(out)


def _pad_frame(x, left: int, right: int):
    rank = len(x.shape)
    return tf.pad(x, [[0, 0]] * (rank - 2) + [[left, right], [left, right]])


def patches_to_group_canvas(patches, offsets, canvas_size: int):
    """Patches (B, C, N, N) placed at ``offsets`` (B, C, 2) and averaged where they overlap:
    (B, canvas_size, canvas_size)."""
    n = patches.shape[-1]
    left, right = _frame_margins(n, canvas_size, "patches_to_group_canvas")
    total = tf.reduce_sum(fourier_shift(_pad_frame(patches, left, right), offsets), axis=1)
    ones = _pad_frame(tf.ones([n, n], tf.float32), left, right)
    coverage = tf.reduce_sum(fourier_shift(ones, offsets), axis=1)
    coverage = tf.maximum(coverage, 1.0)
    return total / tf.cast(coverage, total.dtype)


def group_canvas_to_patches(canvas, offsets, N: int):
    """Re-extract the C patches (B, C, N, N) of group canvases (B, M, M) at ``offsets``."""
    left, _ = _frame_margins(N, canvas.shape[-1], "group_canvas_to_patches")
    moved = fourier_shift(canvas[:, None], -offsets)
    return moved[..., left : left + N, left : left + N]


def canvas_size_for(offsets: np.ndarray, N: int) -> int:
    """The group canvas that holds every patch at ``offsets`` (any shape ending in 2)."""
    offsets = np.asarray(offsets)
    extent = int(math.ceil(float(np.abs(offsets).max()))) if offsets.size else 0
    return N + 2 * extent


def integrate_gradient(gx, gy):
    """Zero-mean ``phi`` (..., H, W) whose forward differences best match ``gx``, ``gy``
    (float32): least squares with Neumann borders, one cosine-transform solve computed as
    the FFT of the mirrored divergence."""
    gx = tf.convert_to_tensor(gx, tf.float32)[..., :, :-1]
    gy = tf.convert_to_tensor(gy, tf.float32)[..., :-1, :]
    rank = len(gx.shape)
    pad_x = [[0, 0]] * (rank - 1)
    pad_y = [[0, 0]] * (rank - 2)
    div = tf.pad(gx, pad_x + [[0, 1]]) - tf.pad(gx, pad_x + [[1, 0]])
    div += tf.pad(gy, pad_y + [[0, 1], [0, 0]]) - tf.pad(gy, pad_y + [[1, 0], [0, 0]])
    h, w = div.shape[-2], div.shape[-1]
    mirrored = tf.concat([div, tf.reverse(div, [-1])], axis=-1)
    mirrored = tf.concat([mirrored, tf.reverse(mirrored, [-2])], axis=-2)
    eig = _laplacian_eigenvalues(h, w, torch.float64, torch.device("cpu")).numpy()
    inverse = 1.0 / eig
    inverse[0, 0] = 0.0  # the mean is zero
    spectrum = tf.signal.fft2d(tf.complex(mirrored, tf.zeros_like(mirrored)))
    phi = tf.math.real(tf.signal.ifft2d(spectrum * tf.constant(inverse, tf.complex64)))
    return phi[..., :h, :w]
