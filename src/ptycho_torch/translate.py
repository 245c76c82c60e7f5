"""Translate ``ptycho_torch`` configs into the core's configs, reporting what is not implemented.

One place decides how every Ptychodus setting maps onto the engine:

- used: pattern size ``N`` (the data's size wins, with a warning), ``C`` -> gridsize, ``K``,
  ``n_subsample`` (groups per position when C > 1), ``mode``, ``loss_function``,
  ``amp_activation`` (except the signed ``silu``/``swish``), ``n_filters_scale``,
  ``object_big``, ``probe_big``, ``probe_mask``,
  ``intensity_scale_trainable``, epochs, batch size, learning rate, scheduler ("Default" is
  the engine's default, the recipe's cosine), warm-up epochs (0: the engine's automatic
  warm-up), the cosine's ``min_lr_ratio``, gradient clipping and accumulation, workers,
  device (CUDA falls back to the CPU with a warning), devices and strategy, inference batch
  size and ``patch_weighting``;
- accepted but not implemented (one warning listing those set to a non-neutral value):
  attention blocks, ``batch_norm=False`` (the network always has batch normalisation: the
  recipe; without it training is fragile), signed amplitude activations (the recipe's
  sigmoid is used), shared decoder, auxiliary losses, alternative
  neighbour functions, scan-position bounds, fine-tuning stages, ``middle_trim``;
- irrelevant here (no warning): bookkeeping (notes, names, experiment number), parameters of
  the unimplemented blocks, and the output cropping options (``pad_eval``, ``window``), since
  Ptychodus dictates the output canvas.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from ptycho._adapt import warn
from ptycho_torch.config_params import (
    ARCHITECTURE_EXTRAS,
    DataConfig,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
)
from ptychopinn.config import ExecutionConfig
from ptychopinn.config import ModelConfig as CoreModelConfig
from ptychopinn.config import TrainingConfig as CoreTrainingConfig
from ptychopinn.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "UnsupportedOptionWarning",
    "adopt_pattern_size",
    "core_execution_config",
    "core_training_config",
    "gridsize_of",
    "report_unsupported",
    "resolve_device",
    "unsupported_options",
]

#: Ptychodus' scheduler names; "Default" is the engine's default schedule (the recipe's cosine).
_SCHEDULERS = {
    "Default": CoreTrainingConfig.scheduler,
    "Exponential": "exponential",
    "Cosine": "cosine",
}


class UnsupportedOptionWarning(UserWarning):
    """A setting the engine accepts but does not implement."""


@dataclass(frozen=True)
class Configs:
    """The four configs a model carries (data, model, training, inference)."""

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    inference: InferenceConfig


def gridsize_of(data: DataConfig) -> int:
    """Group side g with C = g**2 (the engine's groups are square)."""
    g = math.isqrt(data.C)
    if g * g != data.C:
        raise ConfigError(
            f"DataConfig.C: expected a square number of positions per group (1, 4, 9, 16), "
            f"found {data.C}"
        )
    return g


def adopt_pattern_size(data: DataConfig, n: int, source: str) -> None:
    """Set ``data.N`` to the data's pattern size ``n``, warning when they disagree."""
    if data.N != n:
        warn(
            f"{source}: diffraction patterns are {n}x{n} but DataConfig.N (Ptychodus "
            f"'model_size') is {data.N}; using N={n}"
        )
        data.N = n


def _neutral(name: str, value: object, neutral: object) -> str | None:
    return None if value == neutral else f"{name}={value!r}"


def unsupported_options(cfg: Configs, *, inference: bool = False) -> list[str]:
    """``name=value`` of every option set to something the engine does not implement."""
    d, m, t, i = cfg.data, cfg.model, cfg.training, cfg.inference
    if inference:
        found = []
        if 0 < i.middle_trim < d.N:
            found.append(f"middle_trim={i.middle_trim} (patches are stitched whole)")
        return found
    checks = [
        _neutral("neighbor_function", d.neighbor_function, "Nearest"),
        _neutral("normalize", d.normalize, "Batch"),
        _neutral("data_scaling", d.data_scaling, "Parseval"),
        _neutral("probe_normalize", d.probe_normalize, True),
        _neutral("probe_ramp_removal", d.probe_ramp_removal, False),
        _neutral("x_bounds", tuple(d.x_bounds), (0.0, 1.0)),
        _neutral("y_bounds", tuple(d.y_bounds), (0.0, 1.0)),
        _neutral("architecture", m.architecture, "cnn"),
        _neutral("num_datasets", m.num_datasets, 1),
        _neutral("amp_loss", m.amp_loss, None),
        _neutral("phase_loss", m.phase_loss, None),
        _neutral("probe_reference_coeff", m.probe_reference_coeff, 0.0),
        _neutral("amplitude_variance_loss", m.amplitude_variance_loss, False),
        _neutral("epochs_fine_tune", t.epochs_fine_tune, 0),
        _neutral("enable_staged_finetuning", t.enable_staged_finetuning, False),
        _neutral("framework", t.framework, "Lightning"),
    ]
    for name in ARCHITECTURE_EXTRAS:
        checks.append(_neutral(name, getattr(m, name), False))
    if tuple(d.grid_size) != (gridsize_of(d),) * 2:
        checks.append(f"grid_size={tuple(d.grid_size)} (the group shape follows C={d.C})")
    for name in ("C_model", "C_forward"):
        if getattr(m, name) != d.C:
            checks.append(f"{name}={getattr(m, name)} (C={d.C} is used)")
    if m.mode == "Supervised" and d.phase_subtraction:
        checks.append("phase_subtraction=True")
    if m.amp_activation in _SIGNED_ACTIVATIONS:
        checks.append(
            f"amp_activation={m.amp_activation!r} (it allows negative amplitudes, which alias "
            f"the phase by pi; the recipe's {CoreModelConfig.amp_activation!r} is used)"
        )
    if not m.batch_norm:
        checks.append(
            "batch_norm=False (the engine's network trains with batch normalisation: without "
            "it, training at learning rate 1e-3 collapses to a flat amplitude in a third of runs)"
        )
    if m.loss_function == "Poisson" and not t.nll:
        checks.append("nll=False (loss_function='Poisson' is the Poisson NLL)")
    return [c for c in checks if c is not None]


def report_unsupported(cfg: Configs, *, inference: bool = False) -> list[str]:
    """Warn once, listing every unimplemented option in use; return the list."""
    found = unsupported_options(cfg, inference=inference)
    if found:
        warn(
            "ptycho_torch: these settings are not implemented by the PtychoPINN engine and "
            f"are ignored: {', '.join(found)}",
            UnsupportedOptionWarning,
        )
    if not inference:
        logger.info(
            "initial intensity scale derived from the data (ModelConfig.intensity_scale=%g "
            "is not used)",
            cfg.model.intensity_scale,
        )
    return found


#: Amplitude activations that can go negative: a negative amplitude is the same object as a
#: positive one with the phase shifted by pi, and with them training often settled on a flat
#: amplitude (1 seed in 4, 6 epochs, N=32; sigmoid: none). The recipe's sigmoid is used.
_SIGNED_ACTIVATIONS = ("silu", "swish")


def _amplitude_activation(name: str) -> str:
    return CoreModelConfig.amp_activation if name in _SIGNED_ACTIVATIONS else name


def core_model_config(cfg: Configs) -> CoreModelConfig:
    """The engine's ModelConfig."""
    d, m = cfg.data, cfg.model
    return CoreModelConfig(
        normalization="batch",
        N=d.N,
        gridsize=gridsize_of(d),
        n_filters_scale=m.n_filters_scale,
        model_type="supervised" if m.mode == "Supervised" else "pinn",
        amp_activation=_amplitude_activation(m.amp_activation),
        object_big=m.object_big,
        probe_big=m.probe_big,
        probe_mask=bool(m.probe_mask),
        pad_object=m.pad_object,
        probe_scale=d.probe_scale if d.probe_scale > 0 else 4.0,
        gaussian_smoothing_sigma=m.gaussian_smoothing_sigma,
        # Ptychodus' defaults (filters x2, 7 groups per position, 50 epochs) took 945 s
        # with one pass per group; one pass per pattern would take about four times that.
        per_pattern_network=False,
    )


def core_training_config(
    cfg: Configs, *, output_dir: str = "training_outputs"
) -> CoreTrainingConfig:
    """The engine's TrainingConfig; ``n_subsample`` is the number of groups per position
    (``groups_per_position``), so each scan of a multi-scan run gets its own count."""
    d, m, t = cfg.data, cfg.model, cfg.training
    model = core_model_config(cfg)
    c = model.gridsize**2
    mae = m.loss_function == "MAE"
    return CoreTrainingConfig(
        model=model,
        train_data_file=t.train_data_file,
        test_data_file=t.test_data_file,
        batch_size=t.batch_size,
        nepochs=t.epochs,
        mae_weight=1.0 if mae else 0.0,
        nll_weight=0.0 if mae else 1.0,
        n_groups=t.n_groups,
        groups_per_position=float(d.n_subsample),  # gridsize 1: one per position anyway
        neighbor_count=max(d.K + 1, c),
        # Measured with the per-pattern network only; thinning every group of this grouped
        # network lowered its quality at the measured dose (docs/ptychodus.md).
        dose_augmentation=0.0,
        intensity_scale_trainable=m.intensity_scale_trainable,
        probe_trainable=False,
        output_dir=output_dir,
        seed=t.seed,
        learning_rate=t.learning_rate,
        scheduler=_SCHEDULERS[t.scheduler],
        warmup_epochs=t.warmup_epochs or None,
        min_lr_ratio=(
            t.min_lr_ratio if t.scheduler == "Cosine" else CoreTrainingConfig.min_lr_ratio
        ),
        gradient_clip_val=t.gradient_clip_val,
    )


def resolve_device(name: str) -> str:
    """An available device for ``name`` ('cuda' without a GPU -> 'cpu', with a warning);
    names the engine does not know (Ptychodus sends free text) mean the CPU."""
    from ptychopinn.workflows.execution import resolve_device as engine_device

    base = name.split(":")[0].lower()
    if base not in ("auto", "cpu", "cuda", "gpu", "mps"):
        return "cpu"
    return str(engine_device(name.lower()))


def core_execution_config(
    cfg: Configs, *, logger_kind: str = "csv", device: str | None = None, quiet: bool = False
) -> ExecutionConfig:
    """How Lightning runs: device with CPU fallback, devices/strategy, workers, accumulation.

    ``quiet`` suppresses the device/strategy messages (for building a module, not a run).
    """
    t, i = cfg.training, cfg.inference
    say = (lambda *_: None) if quiet else warn
    device = device or resolve_device(t.device)
    accelerator = device.split(":")[0]
    devices = t.n_devices
    if accelerator == "cpu" and devices > 1:
        say(f"n_devices={devices} on the CPU: training on one device")
        devices = 1
    strategy = "auto"
    if devices > 1:
        strategy = t.strategy or "auto"
        if strategy not in ExecutionConfig.STRATEGIES:
            say(f"strategy '{strategy}' is not supported: using 'auto'")
            strategy = "auto"
    elif t.strategy not in (None, "auto") and not quiet:
        logger.info("strategy %r not needed on one device: using 'auto'", t.strategy)
    return ExecutionConfig(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_workers=t.num_workers,
        accumulate_grad_batches=t.accum_steps,
        logger=logger_kind,
        inference_batch_size=i.batch_size,
        enable_progress_bar=False,
    )
