"""Differentiable physics operators: shifts, patch extraction/stitching, forward model, losses.

All operators are batched, differentiable and follow the device and dtype of their inputs.
"""

from .forward import (
    circular_mask,
    diffraction_amplitude,
    diffraction_intensity,
    far_field,
    gaussian_blur,
    illuminate,
)
from .losses import REDUCTIONS, amplitude_mae, poisson_nll, realspace_mae
from .patches import (
    PatchAccumulator,
    extract_patches,
    group_canvas_to_patches,
    patches_to_group_canvas,
    scatter_patches,
    stitch_patches,
)
from .shifts import bilinear_shift, fourier_shift

__all__ = [
    "PatchAccumulator",
    "REDUCTIONS",
    "amplitude_mae",
    "bilinear_shift",
    "circular_mask",
    "diffraction_amplitude",
    "diffraction_intensity",
    "extract_patches",
    "far_field",
    "fourier_shift",
    "gaussian_blur",
    "group_canvas_to_patches",
    "illuminate",
    "patches_to_group_canvas",
    "poisson_nll",
    "realspace_mae",
    "scatter_patches",
    "stitch_patches",
]
