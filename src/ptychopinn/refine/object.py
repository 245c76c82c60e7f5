"""Direct refinement of the object (and optionally the probe) through the forward model.

Started from the stitched PINN object (or a flat one), the object canvas is updated in
mini-batches of scan positions with a gradient of the measurement likelihood that autograd
takes through the project's own forward model (:mod:`ptychopinn.physics.forward`). Each step
is preconditioned by the batch's illumination ``sum |P_k|^2``: with the amplitude loss and
``step=1`` a position's update is the classic PIE projection, averaged where positions of a
batch overlap, so the step needs no tuning to the scan's dose or size. Dark pixels are kept
still by a floor of ``regularization * max(illumination)`` in the denominator (as in rPIE).

Sub-pixel positions: each patch is cut at the nearest integer start and the fractional part
moves onto the probe (a Fourier shift of the probe), which leaves the far-field modulus of
the exact sub-pixel patch unchanged and keeps the object update a plain scatter.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ptychopinn.config import check_choice, check_range, coerce_fields, option
from ptychopinn.errors import DataValidationError
from ptychopinn.physics.forward import far_field
from ptychopinn.physics.shifts import fourier_shift
from ptychopinn.progress import Progress

log = logging.getLogger(__name__)

NOISE_MODELS = ("amplitude", "poisson")


@dataclass
class ObjectRefineSettings:
    """How the object (and probe) refinement runs.

    ``step`` and ``probe_step`` are fractions of the illumination-normalised (PIE) step;
    the object step decays (cosine) to ``final_step * step`` by the last epoch, which averages
    the photon noise out at low dose. ``noise_model``: ``poisson`` (the PINN's likelihood) or
    ``amplitude`` (Gaussian on sqrt counts). ``momentum`` accelerates the object steps across
    batches (0 switches it off); ``regularization`` is the rPIE-like floor of the
    illumination. Defaults were chosen on simulated scans at 1e4 and 1e6 photons
    (``benchmarks/refine_settings.py``).
    """

    epochs: int = option(20, "passes over the scan positions")
    batch_size: int = option(64, "scan positions per update")
    step: float = option(1.0, "fraction of the illumination-normalised (PIE) object step")
    refine_probe: bool = option(False, "refine the probe too")
    probe_step: float = option(1.0, "fraction of the normalised probe step")
    probe_start_epoch: int = option(1, "first epoch that updates the probe")
    noise_model: str = option("poisson", "likelihood of the measured counts: poisson or amplitude")
    regularization: float = option(0.2, "illumination floor, a fraction of its maximum (rPIE)")
    momentum: float = option(0.8, "momentum of the object steps across batches (0: none)")
    final_step: float = option(0.1, "the object step decays (cosine) to this fraction of step")
    seed: int = option(0, "seed of the batch order")

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_range(self, "epochs", ge=1)
        check_range(self, "batch_size", ge=1)
        check_range(self, "step", gt=0.0, le=4.0)
        check_range(self, "probe_step", ge=0.0, le=4.0)
        check_range(self, "probe_start_epoch", ge=0)
        check_choice(self, "noise_model", NOISE_MODELS)
        check_range(self, "regularization", ge=0.0, le=1.0)
        check_range(self, "momentum", ge=0.0, le=0.99)
        check_range(self, "final_step", ge=0.0, le=1.0)


@dataclass
class RefineResult:
    """The refined object on the input canvas, the probe, and the loss after each epoch."""

    object: np.ndarray  # (H, W) complex64
    probe: np.ndarray  # (N, N) complex64, in the units that explain the measured counts
    losses: list[float] = field(default_factory=list)
    epochs_done: int = 0
    seconds: float = 0.0
    stopped: bool = False


def _check_inputs(obj: np.ndarray, probe: np.ndarray, amplitudes, coords: np.ndarray) -> int:
    if obj.ndim != 2:
        raise DataValidationError(f"refine: object must be (H, W); found {obj.shape}")
    n = amplitudes.shape[-1]
    if probe.shape != (n, n):
        raise DataValidationError(
            f"refine: probe must be ({n}, {n}) to match the patterns; found {probe.shape}"
        )
    if coords.shape != (amplitudes.shape[0], 2):
        raise DataValidationError(
            f"refine: {amplitudes.shape[0]} patterns but coordinates of shape {coords.shape}"
        )
    if not np.isfinite(obj).all() or not np.isfinite(probe).all():
        raise DataValidationError("refine: the starting object or probe holds NaN/Inf")
    return n


class _Geometry:
    """Integer patch origins on a padded working canvas and the fractional probe shifts."""

    def __init__(self, coords: np.ndarray, n: int, canvas_shape: tuple[int, int], device):
        starts = coords - (n - 1) / 2.0
        rounded = np.rint(starts)
        self.frac = torch.as_tensor(starts - rounded, dtype=torch.float32, device=device)
        origin = rounded.astype(np.int64)
        h, w = canvas_shape
        # Padding so that every patch lies inside the working canvas.
        self.pad_lo = (int(max(0, -origin[:, 1].min())), int(max(0, -origin[:, 0].min())))
        hi_y = int(max(0, origin[:, 1].max() + n - h))
        hi_x = int(max(0, origin[:, 0].max() + n - w))
        self.shape = (h + self.pad_lo[0] + hi_y, w + self.pad_lo[1] + hi_x)
        oy = torch.as_tensor(origin[:, 1] + self.pad_lo[0], device=device)
        ox = torch.as_tensor(origin[:, 0] + self.pad_lo[1], device=device)
        ar = torch.arange(n, device=device)
        rows = oy[:, None, None] + ar[None, :, None]
        cols = ox[:, None, None] + ar[None, None, :]
        self.index = rows * self.shape[1] + cols  # (M, n, n) flat canvas indices
        self.canvas_shape = canvas_shape

    def embed(self, obj: np.ndarray, device) -> Tensor:
        h, w = self.canvas_shape
        canvas = torch.ones(self.shape, dtype=torch.complex64, device=device)
        canvas = canvas * complex(np.mean(obj)) if np.any(obj) else canvas
        y0, x0 = self.pad_lo
        canvas[y0 : y0 + h, x0 : x0 + w] = torch.as_tensor(obj, dtype=torch.complex64)
        return canvas

    def crop(self, canvas: Tensor) -> np.ndarray:
        h, w = self.canvas_shape
        y0, x0 = self.pad_lo
        return canvas[y0 : y0 + h, x0 : x0 + w].cpu().numpy().astype(np.complex64)


def _likelihood(model_intensity: Tensor, amplitudes: Tensor, noise_model: str) -> Tensor:
    """Loss whose gradient, preconditioned by the illumination, is a PIE-sized step.

    Amplitude: ``0.5 * sum (|Psi| - a)^2`` (gradient ``psi - psi_projected``). Poisson:
    ``0.25 * sum (I - n - n log(I / n))``, a quarter of the deviance, which has the same
    curvature at the solution. Both are zero at a perfect fit.
    """
    if noise_model == "amplitude":
        return 0.5 * (torch.sqrt(model_intensity + 1e-9) - amplitudes).square().sum()
    counts = amplitudes.square()
    log_ratio = torch.log((model_intensity + 1e-6) / (counts + 1e-6))
    return 0.25 * (model_intensity - counts - counts * log_ratio).sum()


def _fit_scale(canvas: Tensor, probe_shifted: Tensor, index: Tensor, amplitudes: Tensor) -> float:
    """Scalar ``c`` that best explains the measured amplitudes by ``|F(P * c O)|``."""
    with torch.no_grad():
        patches = canvas.reshape(-1)[index]
        model_amp = far_field(probe_shifted * patches).abs()
        num = float((model_amp * amplitudes).sum())
        den = float(model_amp.square().sum())
    return num / den if den > 0 and math.isfinite(num / den) and num > 0 else 1.0


def refine_object(
    obj: np.ndarray,
    probe: np.ndarray,
    amplitudes,
    coords: np.ndarray,
    settings: ObjectRefineSettings | None = None,
    *,
    device: str | torch.device = "cpu",
    fit_scale: bool = True,
    progress: bool = False,
    on_epoch: Callable[[int, Callable[[], np.ndarray], float], None] | None = None,
) -> RefineResult:
    """Refine ``obj`` (H, W) so that ``|F(P_k * O_k)|^2`` explains the measured patterns.

    ``amplitudes`` (M, N, N): measured sqrt counts; ``coords`` (M, 2): ``[x, y]`` probe
    centres in object pixels; ``probe`` in the units of the counts (a scalar mismatch of the
    object's scale is fitted first when ``fit_scale``). Unlit pixels keep their start values.
    ``on_epoch(epoch, get_object, seconds)`` is called after each epoch (``seconds`` counts
    refinement only). Ctrl-C stops after the current batch and returns what was refined so
    far with ``stopped=True``.
    """
    settings = settings or ObjectRefineSettings()
    obj = np.asarray(obj)
    probe = np.asarray(probe, dtype=np.complex64)
    coords = np.asarray(coords, dtype=np.float64)
    n = _check_inputs(obj, probe, amplitudes, coords)
    device = torch.device(device)
    geo = _Geometry(coords, n, obj.shape, device)
    meas = torch.as_tensor(np.asarray(amplitudes, dtype=np.float32), device=device)
    m = meas.shape[0]
    canvas = geo.embed(obj, device)
    probe_t = torch.as_tensor(probe, device=device)
    shifted = fourier_shift(probe_t, geo.frac)  # (M, n, n): fixed unless the probe is refined
    if fit_scale:
        sample = torch.arange(0, m, max(1, m // 256), device=device)
        c = _fit_scale(canvas, shifted[sample], geo.index[sample], meas[sample])
        canvas = canvas * c
        log.info("refine: object scale fitted to the measured counts (x%.4g)", c)
    flat = canvas.reshape(-1)
    velocity = torch.zeros_like(flat) if settings.momentum > 0 else None
    rng = np.random.default_rng(settings.seed)
    result = RefineResult(object=obj, probe=probe)
    solve_s = 0.0
    epochs = range(settings.epochs)
    bar = Progress(epochs, desc="refining", unit="epoch", enabled=progress)
    try:
        for epoch in bar:
            start = time.perf_counter()
            update_probe = settings.refine_probe and epoch >= settings.probe_start_epoch
            step = _scheduled_step(settings, epoch)
            total = 0.0
            for batch in np.array_split(
                rng.permutation(m), max(1, math.ceil(m / settings.batch_size))
            ):
                idx = torch.as_tensor(batch, device=device)
                total += _batch_step(
                    flat, velocity, probe_t, shifted, geo, meas, idx, settings, step, update_probe
                )
            if update_probe:  # the fixed shifted probes of the next epochs follow the update
                with torch.no_grad():
                    shifted = fourier_shift(probe_t, geo.frac)
            solve_s += time.perf_counter() - start
            result.losses.append(total / m)
            result.epochs_done = epoch + 1
            bar.set_postfix(loss=f"{total / m:.4g}")
            if on_epoch is not None:
                on_epoch(epoch + 1, lambda: geo.crop(flat.view(geo.shape)), solve_s)
    except KeyboardInterrupt:
        result.stopped = True
        log.warning("refinement stopped after %d epoch(s)", result.epochs_done)
    finally:
        bar.close()
    result.object = geo.crop(flat.view(geo.shape))
    result.probe = probe_t.cpu().numpy().astype(np.complex64)
    result.seconds = solve_s
    return result


def _scheduled_step(settings: ObjectRefineSettings, epoch: int) -> float:
    """Cosine decay from ``step`` to ``final_step * step`` over the epochs (noise averaging)."""
    if settings.epochs <= 1 or settings.final_step >= 1.0:
        return settings.step
    t = epoch / (settings.epochs - 1)
    fraction = settings.final_step + (1 - settings.final_step) * 0.5 * (1 + math.cos(math.pi * t))
    return settings.step * fraction


def _batch_step(
    flat: Tensor,
    velocity: Tensor | None,
    probe: Tensor,
    shifted: Tensor,
    geo: _Geometry,
    meas: Tensor,
    idx: Tensor,
    settings: ObjectRefineSettings,
    step: float,
    update_probe: bool,
) -> float:
    """One preconditioned update of the object (and probe) from the positions ``idx``."""
    index = geo.index[idx]
    obj_leaf = flat.detach().requires_grad_(True)
    probe_leaf = probe.detach().requires_grad_(update_probe)
    if update_probe:
        probes = fourier_shift(probe_leaf, geo.frac[idx])
    else:
        probes = shifted[idx]
    patches = obj_leaf[index]
    intensity = far_field(probes * patches).abs().square()
    loss = _likelihood(intensity, meas[idx], settings.noise_model)
    wrt = [obj_leaf, probe_leaf] if update_probe else [obj_leaf]
    grads = torch.autograd.grad(loss, wrt)
    with torch.no_grad():
        illum = torch.zeros(flat.shape, dtype=torch.float32, device=flat.device)
        illum.index_add_(0, index.reshape(-1), probes.detach().abs().square().reshape(-1))
        denom = illum + settings.regularization * illum.max()
        delta = grads[0] / denom.clamp_min(1e-30)
        if velocity is not None:
            velocity.mul_(settings.momentum).add_(delta)
            delta = delta + settings.momentum * velocity
        flat.sub_(step * delta)
        if update_probe:
            energy = patches.detach().abs().square().sum(0)
            p_denom = energy + settings.regularization * energy.max()
            probe.sub_(settings.probe_step * grads[1] / p_denom.clamp_min(1e-30))
    return float(loss.detach())
