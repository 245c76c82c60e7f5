"""Losses comparing the forward model with measurements (or labels).

All losses share ``reduction``: ``"mean"`` (over all elements), ``"sum"``, ``"none"``
(element-wise) or ``"per_pattern"`` (sum over the last two dimensions, one value per pattern).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ptychopinn.errors import ConfigError

__all__ = ["poisson_nll", "amplitude_mae", "realspace_mae", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none", "per_pattern")


def _reduce(values: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    if reduction == "per_pattern":
        return values.sum(dim=(-2, -1))
    raise ConfigError(f"{name}: reduction must be one of {REDUCTIONS}; found {reduction!r}")


def _check_same_shape(a: Tensor, b: Tensor, name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: prediction and target shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
        )


def poisson_nll(
    pred_intensity: Tensor,
    counts: Tensor,
    *,
    eps: float = 1e-8,
    reduction: str = "mean",
    full: bool = False,
) -> Tensor:
    """Poisson negative log-likelihood ``pred - counts * log(pred + eps)`` of observed counts.

    ``full`` adds the data-only term ``lgamma(counts + 1)`` (the exact NLL, useful for
    reporting; it does not change gradients). The gradient in ``pred`` is
    ``1 - counts / (pred + eps)``, zero at ``pred == counts``.
    """
    _check_same_shape(pred_intensity, counts, "poisson_nll")
    counts = counts.to(device=pred_intensity.device, dtype=pred_intensity.dtype)
    values = pred_intensity - counts * torch.log(pred_intensity + eps)
    if full:
        values = values + torch.lgamma(counts + 1)
    return _reduce(values, reduction, "poisson_nll")


def amplitude_mae(
    pred_amplitude: Tensor, measured_amplitude: Tensor, reduction: str = "mean"
) -> Tensor:
    """Mean absolute error between predicted and measured diffraction amplitudes."""
    _check_same_shape(pred_amplitude, measured_amplitude, "amplitude_mae")
    measured = measured_amplitude.to(device=pred_amplitude.device, dtype=pred_amplitude.dtype)
    values = (pred_amplitude - measured).abs()
    return _reduce(values, reduction, "amplitude_mae")


def realspace_mae(pred_patches: Tensor, true_patches: Tensor, reduction: str = "mean") -> Tensor:
    """Mean modulus of the complex difference between predicted and label patches."""
    _check_same_shape(pred_patches, true_patches, "realspace_mae")
    diff = pred_patches - true_patches.to(device=pred_patches.device, dtype=pred_patches.dtype)
    values = diff.abs()
    return _reduce(values, reduction, "realspace_mae")
