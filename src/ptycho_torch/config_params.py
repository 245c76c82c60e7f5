"""``ptycho_torch.config_params``: the five config dataclasses Ptychodus builds.

Plain, picklable dataclasses of scalars and tuples (Ptychodus builds them in its parent
process and pickles them to the child); importing this module does not import torch.
Every field Ptychodus 1.7.0 sets is accepted. Values are checked for type and range here, by
the core configs' checks (:func:`ptychopinn.config.coerce_fields` reads the type hints);
whether the engine implements an option is decided when the configs are applied
(:mod:`ptycho_torch.translate`), where unimplemented options give a warning, not an error.
Defaults describe what the engine does, so a default config warns about nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from ptychopinn.config import check_choice, check_range, coerce_fields, field_error
from ptychopinn.errors import ConfigError

#: Architecture variants of the original PyTorch engine (attention blocks, shared decoder);
#: accepted so Ptychodus settings load, warned about because the engine does not build them.
ARCHITECTURE_EXTRAS = (
    "use_shared_decoder",
    "eca_encoder",
    "cbam_encoder",
    "cbam_bottleneck",
    "cbam_decoder",
    "eca_decoder",
    "spatial_decoder",
)

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainingConfig",
    "InferenceConfig",
    "DatagenConfig",
    "CONFIG_CLASSES",
    "config_from_dict",
    "update_existing_config",
]

logger = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """How scan positions are grouped and patterns prepared (Ptychodus' ``[PtychoPINNTorchData]``).

    ``N`` is the pattern size (the data's size wins, with a warning, when they differ); ``C``
    positions per group must be a square (gridsize**2); ``K`` nearest neighbours are the
    candidates a group is drawn from; ``n_subsample`` groups are drawn per scan position
    when ``C > 1``.
    """

    N: int = 64
    C: int = 4
    K: int = 6
    K_quadrant: int = 30
    n_subsample: int = 7
    subsample_seed: int | None = None
    grid_size: tuple[int, int] = (2, 2)
    neighbor_function: str = "Nearest"
    min_neighbor_distance: float = 0.0
    max_neighbor_distance: float = 3.0
    scan_pattern: str = "Isotropic"
    normalize: str = "Batch"
    probe_scale: float = 4.0
    probe_normalize: bool = True
    data_scaling: str = "Parseval"
    phase_subtraction: bool = True
    probe_ramp_removal: bool = False
    x_bounds: tuple[float, float] = (0.1, 0.9)
    y_bounds: tuple[float, float] = (0.1, 0.9)
    nphotons: float = 1e5

    NEIGHBOR_FUNCTIONS = ("Nearest", "Min_dist", "4_quadrant")
    SCAN_PATTERNS = ("Isotropic", "Rectangular")
    NORMALIZE_MODES = ("Group", "Batch")
    DATA_SCALINGS = ("Parseval", "Max")

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_range(self, "N", "C", "K", "n_subsample", ge=1)
        check_range(self, "K_quadrant", "subsample_seed", ge=0)
        check_choice(self, "neighbor_function", self.NEIGHBOR_FUNCTIONS)
        check_choice(self, "scan_pattern", self.SCAN_PATTERNS)
        check_choice(self, "normalize", self.NORMALIZE_MODES)
        check_choice(self, "data_scaling", self.DATA_SCALINGS)
        check_range(
            self, "min_neighbor_distance", "max_neighbor_distance", "probe_scale", "nphotons", ge=0
        )


@dataclass
class ModelConfig:
    """Network and physics options (Ptychodus' ``[PtychoPINNTorchModel]``).

    The engine is the PtychoPINN CNN; attention blocks (CBAM/ECA), batch norm, shared
    decoders and auxiliary losses are accepted and reported as not implemented when enabled.
    """

    mode: str = "Unsupervised"
    architecture: str = "cnn"
    object_big: bool = True
    probe_big: bool = True
    pad_object: bool = True
    gaussian_smoothing_sigma: float = 0.0
    loss_function: str = "Poisson"
    amp_activation: str = "silu"
    n_filters_scale: int = 2
    intensity_scale_trainable: bool = False
    intensity_scale: float = 10000.0
    max_position_jitter: int = 10
    num_datasets: int = 1
    C_model: int = 4
    C_forward: int = 4
    decoder_last_amp_channels: int = 4
    probe_mask: bool | None = None
    batch_norm: bool = False
    edge_pad: int = 10
    decoder_last_c_outer_fraction: float = 0.125
    use_shared_decoder: bool = False
    eca_encoder: bool = False
    cbam_encoder: bool = False
    cbam_bottleneck: bool = False
    cbam_decoder: bool = False
    eca_decoder: bool = False
    spatial_decoder: bool = False
    decoder_spatial_kernel: int = 7
    offset: int = 6
    amp_loss: str | None = None
    phase_loss: str | None = None
    amp_loss_coeff: float = 1.0
    phase_loss_coeff: float = 1.0
    probe_reference_coeff: float = 0.0
    amplitude_variance_loss: bool = False
    amplitude_variance_coeff: float = 0.01

    MODES = ("Unsupervised", "Supervised")
    LOSS_FUNCTIONS = ("Poisson", "MAE")
    AMP_ACTIVATIONS = ("silu", "swish", "sigmoid", "softplus", "relu")
    AUX_LOSSES = (None, "Total_Variation", "Mean_Deviation")

    def __post_init__(self) -> None:
        coerce_fields(self)  # "none" for amp_loss/phase_loss is None
        check_choice(self, "mode", self.MODES)
        check_choice(self, "loss_function", self.LOSS_FUNCTIONS)
        check_choice(self, "amp_activation", self.AMP_ACTIVATIONS)
        check_choice(self, "amp_loss", self.AUX_LOSSES)
        check_choice(self, "phase_loss", self.AUX_LOSSES)
        positive_counts = (
            "n_filters_scale",
            "num_datasets",
            "C_model",
            "C_forward",
            "decoder_last_amp_channels",
            "decoder_spatial_kernel",
        )
        check_range(self, *positive_counts, ge=1)
        check_range(self, "max_position_jitter", "edge_pad", "offset", ge=0)
        non_negative = (
            "gaussian_smoothing_sigma",
            "intensity_scale",
            "decoder_last_c_outer_fraction",
            "amp_loss_coeff",
            "phase_loss_coeff",
            "probe_reference_coeff",
            "amplitude_variance_coeff",
        )
        check_range(self, *non_negative, ge=0)


@dataclass
class TrainingConfig:
    """Optimisation and hardware (Ptychodus' ``[PtychoPINNTorchTraining]``).

    ``device`` 'cuda' without a GPU falls back to the CPU with a warning. Fine-tuning stages,
    warm-up and Ptychodus' 'ddp_spawn' strategy on one device are accepted; the ones the
    engine does not implement are reported when training starts.
    """

    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 1e-3
    n_devices: int = 1
    num_workers: int = 0
    accum_steps: int = 1
    gradient_clip_val: float | None = None
    nll: bool = True
    device: str = "auto"
    strategy: str | None = "auto"
    framework: str = "Lightning"
    orchestrator: str = "Lightning"
    scheduler: str = "Default"
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.1
    epochs_fine_tune: int = 0
    fine_tune_gamma: float = 0.1
    enable_staged_finetuning: bool = False
    finetune_stage1_epochs: int = 7
    finetune_stage2_epochs: int = 7
    finetune_stage3_epochs: int = 5
    finetune_stage1_lr_decoder: float = 0.1
    finetune_stage2_lr_encoder_top: float = 0.01
    finetune_stage2_lr_decoder: float = 0.05
    finetune_stage2_lr_phase_head: float = 0.1
    finetune_stage3_lr_encoder_bottom: float = 0.005
    finetune_stage3_lr_encoder_top: float = 0.01
    finetune_stage3_lr_decoder: float = 0.02
    finetune_stage3_lr_phase_head: float = 0.05
    finetune_skip_stage3: bool = True
    finetune_early_stop_patience: int = 3
    finetune_val_split: float = 0.05
    experiment_name: str = "ptychopinn"
    notes: str = ""
    model_name: str = "PtychoPINNv2"
    output_dir: str = "training_outputs"
    train_data_file: str | None = None
    test_data_file: str | None = None
    n_groups: int | None = None
    seed: int = 42
    training_directories: list[str] = field(default_factory=list)

    SCHEDULERS = ("Default", "Exponential", "Cosine")
    DEVICES = ("auto", "cpu", "cuda", "gpu", "mps")

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_range(self, "epochs", "batch_size", "n_devices", "accum_steps", "n_groups", ge=1)
        counts = (
            "num_workers",
            "warmup_epochs",
            "epochs_fine_tune",
            "finetune_stage1_epochs",
            "finetune_stage2_epochs",
            "finetune_stage3_epochs",
            "finetune_early_stop_patience",
            "seed",
        )
        check_range(self, *counts, ge=0)
        check_range(self, "learning_rate", gt=0)
        rates = (
            "gradient_clip_val",
            "min_lr_ratio",
            "fine_tune_gamma",
            "finetune_val_split",
            "finetune_stage1_lr_decoder",
            "finetune_stage2_lr_encoder_top",
            "finetune_stage2_lr_decoder",
            "finetune_stage2_lr_phase_head",
            "finetune_stage3_lr_encoder_bottom",
            "finetune_stage3_lr_encoder_top",
            "finetune_stage3_lr_decoder",
            "finetune_stage3_lr_phase_head",
        )
        check_range(self, *rates, ge=0)
        if self.device.split(":")[0] not in self.DEVICES:
            raise field_error(
                self, "device", f"one of {', '.join(self.DEVICES)} (or 'cuda:N')", self.device
            )
        check_choice(self, "scheduler", self.SCHEDULERS)


@dataclass
class InferenceConfig:
    """Reconstruction options (Ptychodus' ``[PtychoPINNTorchInference]``).

    ``patch_weighting`` 'probe' weights each patch by ``|probe|^2`` when stitching, 'uniform'
    averages them; ``batch_size`` is the number of patterns per forward pass.
    """

    batch_size: int = 1000
    middle_trim: int = 0
    experiment_number: int = 0
    patch_weighting: str = "probe"
    pad_eval: bool = True
    window: int = 20

    PATCH_WEIGHTINGS = ("probe", "uniform")

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_range(self, "batch_size", ge=1)
        check_range(self, "middle_trim", "experiment_number", "window", ge=0)
        check_choice(self, "patch_weighting", self.PATCH_WEIGHTINGS)


@dataclass
class DatagenConfig:
    """Synthetic-data options of the original package; carried along, unused by the engine."""

    objects_per_probe: int = 4
    diff_per_object: int = 7000
    object_class: str = "dead_leaves"
    image_size: tuple[int, int] = (250, 250)
    probe_paths: list[str] = field(default_factory=list)
    beamstop_diameter: int = 4


CONFIG_CLASSES: dict[str, type] = {
    "data_config": DataConfig,
    "model_config": ModelConfig,
    "training_config": TrainingConfig,
    "inference_config": InferenceConfig,
    "datagen_config": DatagenConfig,
}


def config_from_dict(cls: type, values: dict[str, Any], *, source: str = "<dict>") -> Any:
    """Build ``cls`` from a plain dict (e.g. a checkpoint's hyper-parameters).

    Keys the class does not know are dropped with a log message (they come from other
    versions); tuples stored as lists are restored by the field checks.
    """
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(
            f"{source}: expected a mapping for {cls.__name__}, found {type(values).__name__}"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        logger.info("%s: ignoring unknown %s key(s) %s", source, cls.__name__, unknown)
    return cls(**{k: v for k, v in values.items() if k in known})


def update_existing_config(
    config_instance: Any, updates_dict: Any, verbose: bool = False, strict_frozen: bool = False
) -> None:
    """Set the fields named in ``updates_dict`` (a dict or another config) and re-validate.

    Unknown keys are skipped (logged when ``verbose``). ``strict_frozen`` is accepted for
    compatibility.
    """
    del strict_frozen
    if dataclasses.is_dataclass(updates_dict) and not isinstance(updates_dict, type):
        updates_dict = dataclasses.asdict(updates_dict)
    known = {f.name for f in dataclasses.fields(config_instance)}
    for key, value in dict(updates_dict).items():
        if key in known:
            setattr(config_instance, key, value)
        elif verbose:
            logger.warning("%s has no field %r; ignored", type(config_instance).__name__, key)
    post_init = getattr(config_instance, "__post_init__", None)
    if post_init is not None:
        post_init()
