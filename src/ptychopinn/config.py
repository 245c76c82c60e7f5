"""Typed configuration for PtychoPINN: dataclasses, validation, YAML I/O and legacy keys.

The configs are plain, picklable dataclasses. Every value passes through one generic
coercion step (:func:`coerce_value`, driven by the dataclass type hints) in
``__post_init__``, so a config built from Python, a YAML file or command-line strings is
checked the same way, and bad input raises :class:`~ptychopinn.errors.ConfigError` naming
the field, what was expected and what was found.

This module must stay importable without torch: the compatibility packages and the CLIs
parse configs before deciding whether a backend is needed at all.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import logging
import math
import numbers
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

import yaml

from ptychopinn.atomic import atomic_write
from ptychopinn.errors import ConfigError

__all__ = [
    "ModelConfig",
    "TrainingConfig",
    "InferenceConfig",
    "ExecutionConfig",
    "CONFIG_CLASSES",
    "SECTIONS",
    "SECTION_CLASSES",
    "describe",
    "option",
    "resolve_config_path",
    "LEGACY_KEYS",
    "IGNORED_LEGACY_KEYS",
    "parse_bool",
    "coerce_value",
    "to_dict",
    "from_dict",
    "load_yaml",
    "save_yaml",
    "load_config_file",
    "load_training_config",
    "load_inference_config",
    "load_execution_config",
    "update_legacy_dict",
    "MOVED_TO_TRAINING",
    "migrate_sections",
]

logger = logging.getLogger(__name__)

C = TypeVar("C")

_TRUE_WORDS = frozenset({"true", "yes", "1", "on", "t", "y"})
_FALSE_WORDS = frozenset({"false", "no", "0", "off", "f", "n"})
_NONE_WORDS = frozenset({"none", "null", "~", ""})

#: Legacy (TensorFlow-era ``params.cfg`` / old YAML) names mapped to current field names.
LEGACY_KEYS: dict[str, str] = {
    "n_images": "n_groups",
    "nimgs_train": "n_groups",
    "nimgs_test": "n_groups",
    "object.big": "object_big",
    "probe.big": "probe_big",
    "probe.mask": "probe_mask",
    "probe.trainable": "probe_trainable",
    "intensity_scale.trainable": "intensity_scale_trainable",
    "positions.provided": "positions_provided",
    "epochs": "nepochs",
    "train_data_file_path": "train_data_file",
    "test_data_file_path": "test_data_file",
    "output_prefix": "output_dir",
    "default_probe_scale": "probe_scale",
}

#: Legacy keys that only make sense for one kind of run (routing of flat YAML files).
_LEGACY_SECTION_ONLY: dict[str, str] = {"nimgs_train": "training", "nimgs_test": "inference"}

#: Keys of the legacy simulator/TensorFlow code that have no effect here; accepted with a
#: warning so that old YAML files still load.
IGNORED_LEGACY_KEYS: frozenset[str] = frozenset(
    {
        "offset",
        "outer_offset_train",
        "outer_offset_test",
        "max_position_jitter",
        "sim_jitter_scale",
        "tv_weight",
        "data_source",
        "set_phi",
        "big_gridsize",
        "bigN",
        "label",
        "size",
        "h5_path",
        "use_xla_translate",
    }
)

SECTIONS: tuple[str, ...] = ("model", "training", "inference", "execution")

#: The optimiser settings, ExecutionConfig fields in version 0.1.0 and TrainingConfig fields
#: since: YAML files, archives and checkpoints that hold them under ``execution`` are read
#: into ``training`` (:func:`migrate_sections`).
MOVED_TO_TRAINING: tuple[str, ...] = (
    "learning_rate",
    "scheduler",
    "warmup_epochs",
    "min_lr_ratio",
    "gradient_clip_val",
)


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def field_error(obj: Any, name: str, expected: str, found: Any) -> ConfigError:
    return ConfigError(f"{type(obj).__name__}.{name}: expected {expected}, found {found!r}")


def check_choice(obj: Any, name: str, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    value = getattr(obj, name)
    if value not in choices:
        listed = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)
        raise field_error(obj, name, f"one of {listed}", value)


#: Seeds reach numpy and Lightning, which take 32-bit unsigned seeds.
MAX_SEED = 2**32 - 1


def check_range(
    obj: Any,
    *names: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> None:
    """Check a numeric bound on each named field; ``None`` values (Optional fields) pass.

    With :func:`check_choice` and :func:`coerce_fields`, the field checks every typed
    settings class of the package shares (configs, refinement settings).
    """
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        if ge is not None and not value >= ge:
            raise field_error(obj, name, f"a value >= {ge}", value)
        if gt is not None and not value > gt:
            raise field_error(obj, name, f"a value > {gt}", value)
        if le is not None and not value <= le:
            raise field_error(obj, name, f"a value <= {le}", value)
        if lt is not None and not value < lt:
            raise field_error(obj, name, f"a value < {lt}", value)


def check_count(name: str, value: Any, minimum: int = 0) -> int:
    """A plain function argument that must be an integer >= ``minimum``, by the configs'
    rules (integral numbers and numpy integers pass, booleans do not)."""
    try:
        count = _coerce_scalar(int, value)
    except ValueError:
        count = None
    if count is None or count < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    return count


def coerce_fields(obj: Any) -> None:
    """Run :func:`coerce_value` over every field, in place (called from __post_init__)."""
    cls = type(obj)
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, coerce_value(cls, f.name, getattr(obj, f.name)))


def option(default: Any = dataclasses.MISSING, doc: str = "", *, factory=None, **meta) -> Any:
    """A dataclass field with its one-line description (``--help``, commented YAML, docs).

    ``meta`` adds CLI hints: ``nargs`` (several values), ``metavar`` and ``default_text`` (how a
    computed default reads).
    """
    if not doc:
        raise ValueError("option: every config field needs a description")
    kw: dict[str, Any] = {"metadata": {"doc": doc, **meta}}
    if factory is not None:
        kw["default_factory"] = factory
    else:
        kw["default"] = default
    return field(**kw)


def describe(cls: type, name: str) -> str:
    """The one-line description of field ``name`` of a config class ('' if it has none)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("doc", "")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


# --------------------------------------------------------------------------------------
# Config classes
# --------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Network architecture and physics-model options (shared by training and inference).

    The defaults of this config, :class:`TrainingConfig` and :class:`ExecutionConfig` are the
    best measured recipe (``benchmarks/quality.py``; figures in the README); the CLIs, the
    benchmarks, the quick start and the Ptychodus front-ends use them rather than copies.
    """

    N: int = option(64, "diffraction pattern size in pixels (32, 64, 128 or 256)")
    gridsize: int = option(
        2, "groups of gridsize x gridsize neighbouring positions share one object (1: none)"
    )
    n_filters_scale: int = option(
        1, "width of the network: channels x this (the original PtychoPINN used 2)"
    )
    model_type: str = option(
        "pinn", "pinn: physics (Poisson) loss, no ground truth; supervised: true patches"
    )
    amp_activation: str = option(
        "sigmoid", "output activation of the amplitude head (sigmoid, softplus, relu, ...)"
    )
    object_big: bool = option(
        True, "merge a group's patches into one shared object before the forward model"
    )
    probe_big: bool = option(
        True, "predict the whole N x N patch (false: the central N/2 region, zero-padded)"
    )
    probe_mask: bool = option(False, "multiply the probe by a circular mask of diameter N")
    pad_object: bool = option(
        True, "with probe_big false: zero-pad the predicted central region to N x N"
    )
    probe_scale: float = option(
        4.0, "kept for configs of the original code; this engine does not use it"
    )
    gaussian_smoothing_sigma: float = option(
        0.0, "Gaussian blur (px) of the probe in the forward model; 0: none"
    )
    normalization: str = option(
        "batch", "normalisation layers of the network: batch, group or none"
    )
    global_mixing: bool = option(
        True, "a global (all-to-all) mixing layer at the network's bottleneck"
    )
    #: Measured on the quality panel: the training scan and the unseen objects' phase gain
    #: over one pass per group, and the model takes any grouping (gridsize 1 included).
    per_pattern_network: bool = option(
        True,
        "one network pass per pattern, trained on overlap groups (false: one per group)",
    )

    phase_head: str = option(
        "phase",
        "phase output: phase, or gradient (integrated over the object; see docs/quality.md)",
    )

    ALLOWED_N: ClassVar[tuple[int, ...]] = (32, 64, 128, 256)
    MODEL_TYPES: ClassVar[tuple[str, ...]] = ("pinn", "supervised")
    AMP_ACTIVATIONS: ClassVar[tuple[str, ...]] = ("sigmoid", "swish", "silu", "softplus", "relu")
    NORMALIZATIONS: ClassVar[tuple[str, ...]] = ("none", "batch", "group")
    PHASE_HEADS: ClassVar[tuple[str, ...]] = ("phase", "gradient")

    @property
    def network_channels(self) -> int:
        """Patterns the network reads per pass: 1 per pattern, else the group's C."""
        return 1 if self.per_pattern_network else self.gridsize**2

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_choice(self, "N", self.ALLOWED_N)
        check_range(self, "gridsize", ge=1, le=4)
        # x16 is already 512..2048 channels, beyond what any measured recipe uses.
        check_range(self, "n_filters_scale", ge=1, le=16)
        check_choice(self, "model_type", self.MODEL_TYPES)
        check_choice(self, "amp_activation", self.AMP_ACTIVATIONS)
        check_choice(self, "normalization", self.NORMALIZATIONS)
        check_choice(self, "phase_head", self.PHASE_HEADS)
        check_range(self, "probe_scale", gt=0)
        check_range(self, "gaussian_smoothing_sigma", ge=0)
        if self.gaussian_smoothing_sigma > self.N / 4:
            # Zero-padded, a wider blur spreads most of the probe off its N x N grid: the
            # model would fit an almost dark probe (and the kernel's 6 sigma taps get slow).
            raise field_error(
                self,
                "gaussian_smoothing_sigma",
                f"a blur of at most N/4 = {self.N / 4:g} px for N = {self.N}",
                self.gaussian_smoothing_sigma,
            )


def _check_sampling(obj: Any, backends: tuple[str, ...]) -> None:
    """Checks shared by training and inference sampling options."""
    check_range(obj, "n_groups", ge=1)
    check_range(obj, "n_subsample", ge=1)
    check_range(obj, "subsample_seed", ge=0, le=MAX_SEED)
    check_choice(obj, "backend", backends)
    if not obj.output_dir:
        raise field_error(obj, "output_dir", "a non-empty directory path", obj.output_dir)


BACKENDS: tuple[str, ...] = ("pytorch", "tensorflow")
#: Inference may also follow the archive (``auto``).
INFERENCE_BACKENDS: tuple[str, ...] = ("auto", *BACKENDS)


@dataclass
class TrainingConfig:
    """What to train on and with which loss; ``n_groups=None`` means use all groups.

    ``neighbor_count=None`` (the default) means ``gridsize**2 + 3``: a group's members are
    drawn from a few more than the nearest positions that fill it, so every gridsize works
    without setting it and the ``groups_per_position`` groups of a position differ.
    """

    model: ModelConfig = option(doc="the network and physics model", factory=ModelConfig)
    #: One NPZ file, or several joined with ``os.pathsep`` (a list is joined on input):
    #: every file keeps its own probe and positions (:attr:`train_data_files`).
    train_data_file: str | None = option(
        None, "training scan(s): NPZ file(s), each with its own probe and positions", nargs="+"
    )
    test_data_file: str | None = option(
        None, "scan for validation and --do_stitching (NPZ; objectGuess scores it)"
    )
    batch_size: int = option(16, "groups per optimiser step")
    nepochs: int = option(30, "training epochs (passes over all groups)")
    mae_weight: float = option(0.0, "weight of the amplitude MAE loss (Gaussian-noise data)")
    nll_weight: float = option(1.0, "weight of the Poisson negative log-likelihood loss")
    realspace_mae_weight: float = option(
        0.0, "weight of an MAE against true patches (needs labels in the training file)"
    )
    realspace_weight: float = option(
        0.0, "weight of an MSE against true patches (needs labels in the training file)"
    )
    nphotons: float = option(
        1e9, "kept for configs of the original code; the dose is read from the data"
    )
    n_groups: int | None = option(
        None, "train on this many groups per scan; none: groups_per_position x positions"
    )
    #: Several groups per position differ in their members (drawn from ``neighbor_count``
    #: nearest positions); that variety, not more passes, is what lets a model generalise.
    groups_per_position: float = option(2.0, "groups per scan position (n_groups, when set, wins)")
    n_subsample: int | None = option(
        None, "first draw this many scan positions at random; none: all"
    )
    subsample_seed: int | None = option(
        None, "seed of the n_subsample draw; none: a fresh random draw"
    )
    neighbor_count: int | None = option(
        None,
        "nearest positions a group is drawn from",
        default_text="gridsize**2 + 3",
    )
    #: Binomial thinning of photon counts is an exact lower-dose copy of the same scan
    #: (``ptychopinn.physics.thinning``); it is what lets a model carry over to other doses.
    dose_augmentation: float = option(
        0.5, "share of groups trained on their counts thinned to a lower dose; 0: none"
    )
    dose_augmentation_min: float = option(
        0.01, "lowest kept fraction of the counts (log-uniform between it and 1)"
    )
    #: See :mod:`ptychopinn.workflows.self_augment`: a short first training reconstructs each
    #: scan; the model is then trained afresh on the scans and mirrored copies of their
    #: objects (same probe, positions and dose), in about the same number of steps.
    self_augmentation: int = option(
        0, "mirrored copies of each scan's first reconstruction to train on as well (0-3)"
    )
    positions_provided: bool = option(
        True, "kept for configs of the original code; positions always come from the data"
    )
    probe_trainable: bool = option(False, "learn a correction of the probe during training")
    intensity_scale_trainable: bool = option(
        True, "learn the intensity scale (started from the data's mean counts)"
    )
    sequential_sampling: bool = option(
        False, "with n_groups: the first positions anchor the groups, not a random subset"
    )
    output_dir: str = option("training_outputs", "where the archive, logs and pictures go")
    backend: str = option(
        "pytorch", "pytorch, or tensorflow (needs the extra: pip install 'ptychopinn[tensorflow]')"
    )
    seed: int = option(42, "seed of weights, grouping and shuffling (same seed, same run)")
    learning_rate: float = option(1e-3, "Adam learning rate (peak of the schedule)")
    scheduler: str = option(
        "cosine", "learning-rate decay: cosine, none, step, exponential, plateau"
    )
    #: Keeps wide networks at large batches from collapsing.
    warmup_epochs: float | None = option(
        None,
        "linear learning-rate warm-up in epochs; none: 100 steps, at most a tenth of the run",
        default_text="none (automatic)",
    )
    min_lr_ratio: float = option(0.01, "where the cosine decay ends, as a fraction of the rate")
    gradient_clip_val: float | None = option(None, "clip gradient norms to this; none: off")

    SCHEDULERS: ClassVar[tuple[str, ...]] = ("none", "cosine", "step", "plateau", "exponential")

    def __post_init__(self) -> None:
        if isinstance(self.train_data_file, list | tuple):
            self.train_data_file = join_paths(self.train_data_file)
        coerce_fields(self)
        check_range(self, "batch_size", ge=1)
        check_range(self, "nepochs", ge=1)
        check_range(
            self, "mae_weight", "nll_weight", "realspace_mae_weight", "realspace_weight", ge=0
        )
        if self.model.model_type == "pinn" and self.nll_weight <= 0 and self.mae_weight <= 0:
            raise ConfigError(
                "TrainingConfig.nll_weight/mae_weight: expected at least one > 0 for "
                f"model_type 'pinn' (the physics loss), found nll_weight={self.nll_weight!r}, "
                f"mae_weight={self.mae_weight!r}"
            )
        check_range(self, "nphotons", gt=0)
        _check_sampling(self, BACKENDS)
        check_range(self, "groups_per_position", gt=0, le=1000)
        check_range(self, "dose_augmentation", ge=0, le=1)
        check_range(self, "dose_augmentation_min", gt=0, le=1)
        check_range(self, "self_augmentation", ge=0, le=3)
        if self.self_augmentation and self.backend == "tensorflow":
            raise field_error(
                self, "self_augmentation", "0 with the tensorflow backend", self.self_augmentation
            )
        if self.self_augmentation and self.probe_trainable:
            raise field_error(
                self,
                "self_augmentation",
                "0 with probe_trainable (the copies are scans of their own; one probe cannot "
                "be learned for all)",
                self.self_augmentation,
            )
        group = self.model.gridsize**2
        if self.neighbor_count is None:
            self.neighbor_count = group + 3
        check_range(self, "neighbor_count", ge=1)
        if self.model.gridsize > 1 and self.neighbor_count < group:
            raise field_error(
                self,
                "neighbor_count",
                f"a value >= gridsize**2 = {group} (gridsize={self.model.gridsize})",
                self.neighbor_count,
            )
        check_range(self, "seed", ge=0, le=MAX_SEED)
        check_range(self, "learning_rate", gt=0)
        check_choice(self, "scheduler", self.SCHEDULERS)
        check_range(self, "warmup_epochs", ge=0)
        check_range(self, "min_lr_ratio", ge=0, le=1)
        check_range(self, "gradient_clip_val", ge=0)

    @property
    def train_data_files(self) -> list[str]:
        """The training files (``train_data_file`` split at ``os.pathsep``)."""
        return split_paths(self.train_data_file)


def join_paths(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Several paths as one config string, joined like ``PATH`` (``os.pathsep``)."""
    return os.pathsep.join(os.fspath(p) for p in paths)


def split_paths(text: str | None) -> list[str]:
    """The paths of a :func:`join_paths` string (empty parts dropped)."""
    return [p for p in (text or "").split(os.pathsep) if p]


@dataclass
class InferenceConfig:
    """Which trained model to apply to which data; ``n_groups=None`` means all positions."""

    model: ModelConfig = option(doc="the network and physics model", factory=ModelConfig)
    model_path: str | None = option(None, "trained model: its directory or wts.h5.zip")
    test_data_file: str | None = option(
        None,
        "scan to reconstruct: NPZ, Ptychodus product.h5 (diffraction.h5 beside it) or CXI",
        aliases=("--test_data",),
    )
    n_groups: int | None = option(
        None, "reconstruct the first this many positions; none: all", aliases=("--n_images",)
    )
    n_subsample: int | None = option(
        None, "first draw this many scan positions at random; none: all"
    )
    subsample_seed: int | None = option(None, "seed of the n_subsample draw")
    output_dir: str = option("inference_outputs", "where the reconstruction and pictures go")
    backend: str = option(
        "auto",
        "pytorch, tensorflow, or auto: the archive's own (pytorch if tensorflow is missing)",
    )
    adapt_batch_norm: bool = option(
        False,
        "predict with the scan's own batch-norm statistics (up to 256 patterns), not training's",
    )
    debug: bool = option(False, "log at debug level while reconstructing (like --verbose)")

    def __post_init__(self) -> None:
        coerce_fields(self)
        _check_sampling(self, INFERENCE_BACKENDS)


@dataclass
class ExecutionConfig:
    """How torch/Lightning runs (hardware, precision, logging), not what it computes.

    The optimiser and its schedule are :class:`TrainingConfig` fields; configs, archives and
    checkpoints that still carry them here are moved over by :func:`migrate_sections`.
    """

    accelerator: str = option("auto", "auto, cpu, cuda (gpu) or mps")
    devices: int = option(1, "devices to train on (more than 1: DDP)")
    strategy: str = option("auto", "Lightning strategy: auto, ddp, ddp_spawn, ...")
    precision: str = option(
        "auto",
        "auto (bf16-mixed on CPUs with bfloat16 units, else 32-true), 32-true, bf16-mixed, ...",
    )
    deterministic: bool = option(False, "deterministic torch kernels (slower)")
    num_workers: int = option(0, "data-loader worker processes (0: in the main process)")
    accumulate_grad_batches: int = option(1, "batches whose gradients make one step")
    logger: str = option("csv", "csv, tensorboard, mlflow (each keeps logs/metrics.csv) or none")
    mlflow_tracking_uri: str | None = option(
        None,
        "MLflow store; none: $MLFLOW_TRACKING_URI, else sqlite <output_dir>/mlflow.db",
    )
    mlflow_experiment: str = option("ptychopinn", "MLflow experiment name")
    enable_checkpointing: bool = option(True, "write best and last checkpoints (resumable)")
    checkpoint_save_top_k: int = option(1, "best checkpoints kept (-1: all)")
    early_stopping_patience: int | None = option(
        None, "stop after this many epochs without improvement; none: never"
    )
    inference_batch_size: int = option(64, "patterns per forward pass when reconstructing")
    enable_progress_bar: bool = option(True, "progress bar on a terminal")

    ACCELERATORS: ClassVar[tuple[str, ...]] = ("auto", "cpu", "cuda", "gpu", "mps")
    STRATEGIES: ClassVar[tuple[str, ...]] = (
        "auto",
        "ddp",
        "ddp_spawn",
        "ddp_notebook",
        "single_device",
    )
    PRECISIONS: ClassVar[tuple[str, ...]] = (
        "auto",
        "32-true",
        "16-mixed",
        "bf16-mixed",
    )
    LOGGERS: ClassVar[tuple[str, ...]] = ("csv", "tensorboard", "mlflow", "none")
    #: Lightning's short precision spellings, accepted on input.
    _VALUE_ALIASES: ClassVar[dict[str, dict[str, str]]] = {
        "precision": {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}
    }

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_choice(self, "accelerator", self.ACCELERATORS)
        check_range(self, "devices", ge=1)
        check_choice(self, "strategy", self.STRATEGIES)
        check_choice(self, "precision", self.PRECISIONS)
        check_range(self, "num_workers", ge=0)
        check_range(self, "accumulate_grad_batches", ge=1)
        check_choice(self, "logger", self.LOGGERS)
        check_range(self, "checkpoint_save_top_k", ge=-1)
        check_range(self, "early_stopping_patience", ge=0)
        check_range(self, "inference_batch_size", ge=1)


CONFIG_CLASSES: tuple[type, ...] = (ModelConfig, TrainingConfig, InferenceConfig, ExecutionConfig)
_SECTION_CLASS: dict[str, type] = dict(zip(SECTIONS, CONFIG_CLASSES, strict=True))
#: The config class of each YAML section (model, training, inference, execution).
SECTION_CLASSES: Mapping[str, type] = types.MappingProxyType(_SECTION_CLASS)
#: Recipe templates shipped with the package; ``--config NAME`` finds ``NAME.yaml`` here.
RECIPE_DIR = Path(__file__).with_name("recipes")


# --------------------------------------------------------------------------------------
# Type coercion (the one generic place)
# --------------------------------------------------------------------------------------


def parse_bool(text: Any, *, what: str = "value") -> bool:
    """Parse a boolean from CLI/YAML text (true/false, yes/no, 1/0, on/off).

    ``what`` names the setting in the error message.
    """
    if isinstance(text, bool):
        return text
    if isinstance(text, numbers.Integral) and int(text) in (0, 1):
        return bool(int(text))
    if isinstance(text, str):
        word = text.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise ConfigError(
        f"{what}: expected a boolean (true/false, yes/no, 1/0, on/off), found {text!r}"
    )


@functools.cache
def _field_types(cls: type) -> dict[str, tuple[Any, bool]]:
    """Map each field of a config class to (base type, optional?) from its type hints.

    The base type is a class, a fixed-length ``tuple[...]`` hint, or a tuple of such
    alternatives (``int | tuple[int, int]``), tried in order.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[Any, bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = False
        if typing.get_origin(hint) in (Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            hint = args[0] if len(args) == 1 else tuple(args)
        out[f.name] = (hint, optional)
    return out


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a finite number", str: "a string"}


def _describe(base: Any, optional: bool) -> str:
    if isinstance(base, tuple):
        text = " or ".join(_describe(b, False) for b in base)
    elif typing.get_origin(base) is tuple:
        parts = ", ".join(
            _TYPE_NAMES.get(a, str(a)).split(" ", 1)[-1] for a in typing.get_args(base)
        )
        text = f"a sequence ({parts})"
    elif typing.get_origin(base) is list:
        item = _TYPE_NAMES.get(typing.get_args(base)[0], "value").split(" ", 1)[-1]
        text = f"a list of {item}s"
    else:
        text = _TYPE_NAMES.get(base, f"a {getattr(base, '__name__', base)} or mapping")
    return f"{text} or null" if optional else text


def _coerce_typed(base: Any, value: Any) -> Any:
    """:func:`_coerce_scalar`, extended to lists, fixed-length tuples and alternatives."""
    if isinstance(base, tuple):  # alternatives, in order
        for alternative in base:
            try:
                return _coerce_typed(alternative, value)
            except (ValueError, ConfigError):
                continue
        raise ValueError
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValueError
        return [_coerce_scalar(item, v) for v in value]
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValueError
        items = list(value)
        if len(items) != len(args):
            raise ValueError
        return tuple(_coerce_scalar(a, v) for a, v in zip(args, items, strict=True))
    return _coerce_scalar(base, value)


def _coerce_scalar(base: type, value: Any) -> Any:
    """Convert ``value`` to ``base`` where that is lossless; raise ValueError otherwise."""
    if base is bool:
        return parse_bool(value)
    if base is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value) and value.is_integer():
                return int(value)
            raise ValueError
        if isinstance(value, str):
            text = value.strip()
            try:
                return int(text)
            except ValueError:
                return _coerce_scalar(int, float(text))
        raise ValueError
    if base is float:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, numbers.Real):
            result = float(value)
        elif isinstance(value, str):
            result = float(value.strip())
        else:
            raise ValueError
        if not math.isfinite(result):
            raise ValueError
        return result
    if base is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise ValueError
    raise ValueError


def coerce_value(cls: type, field_name: str, value: Any) -> Any:
    """Convert ``value`` to the declared type of ``cls.field_name`` or raise ConfigError.

    Only safe conversions are made: integral floats to int, ints to float, boolean words
    to bool, "none"/"null" to None for Optional fields, paths to str and mappings to a
    nested config. CLIs pass raw strings here.
    """
    types_ = _field_types(cls)
    if field_name not in types_:
        raise ConfigError(
            f"{cls.__name__}: unknown field {field_name!r}{_suggest(field_name, types_)}"
        )
    base, optional = types_[field_name]
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy scalars -> Python scalars, so configs stay YAML-safe
    aliases = getattr(cls, "_VALUE_ALIASES", {}).get(field_name)
    if aliases and isinstance(value, str | int) and not isinstance(value, bool):
        value = aliases.get(str(value).strip(), value)
    if value is None or (
        optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS
    ):
        if optional:
            return None
        raise ConfigError(
            f"{cls.__name__}.{field_name}: expected {_describe(base, False)}, found None"
        )
    if not isinstance(base, tuple) and dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return value
        if isinstance(value, Mapping):
            return _build(base, value, source=None)
    else:
        try:
            return _coerce_typed(base, value)
        except (ValueError, ConfigError):
            pass
    raise ConfigError(
        f"{cls.__name__}.{field_name}: expected {_describe(base, optional)}, "
        f"found {value!r} ({type(value).__name__})"
    )


# --------------------------------------------------------------------------------------
# dict conversion
# --------------------------------------------------------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    """Return a nested dict of plain YAML-safe values (``model`` stays a nested mapping)."""
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"to_dict expects a config dataclass instance, got {type(cfg).__name__}")
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _has_model(cls: type) -> bool:
    return "model" in _field_names(cls)


def _current_name(key: Any, source: str) -> str | None:
    """The current field name of a config key: legacy names renamed (with a warning),
    ``None`` for ignored legacy keys; non-string keys are errors."""
    if not isinstance(key, str):
        raise ConfigError(f"{source}: expected string keys, found key {key!r}")
    if key in IGNORED_LEGACY_KEYS:
        logger.warning("%s: legacy key %r has no effect here and is ignored", source, key)
        return None
    name = LEGACY_KEYS.get(key, key)
    if name != key:
        logger.warning("%s: legacy key %r is deprecated; use %r", source, key, name)
    return name


def _canonical_items(data: Mapping[Any, Any], source: str) -> dict[str, Any]:
    """Check key types, rename legacy keys (with a warning) and drop ignored legacy keys."""
    out: dict[str, Any] = {}
    renamed_from: dict[str, str] = {}
    for key, value in data.items():
        name = _current_name(key, source)
        if name is None:
            continue
        if name in out and out[name] != value:
            first = renamed_from.get(name, name)
            raise ConfigError(
                f"{source}: {first!r} and {key!r} both set {name!r}, to {out[name]!r} "
                f"and {value!r}; give it once"
            )
        out[name] = value
        renamed_from[name] = key
    return out


def _move_keys(keys: list[str], src: dict, dst: dict, clash: Callable) -> None:
    """Move ``keys`` from ``src`` into ``dst``; ``clash(key, in_dst, in_src)`` is the error
    raised when both hold different values."""
    for key in keys:
        value = src.pop(key)
        if key in dst and dst[key] != value:
            raise clash(key, dst[key], value)
        dst[key] = value


def migrate_sections(
    training: Mapping[str, Any], execution: Mapping[str, Any], source: str, *, quiet: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training, execution)`` with the :data:`MOVED_TO_TRAINING` keys of ``execution``
    moved into ``training`` (a warning names them unless ``quiet``); a key given in both
    with different values is an error."""
    training, execution = dict(training), dict(execution)
    moved = [k for k in MOVED_TO_TRAINING if k in execution]
    _move_keys(
        moved,
        execution,
        training,
        lambda key, kept, given: ConfigError(
            f"{source}: {key!r} is given under training ({kept!r}) and under execution "
            f"({given!r}); give it once, under training"
        ),
    )
    if moved and not quiet:
        logger.warning(
            "%s: %s under execution is deprecated: optimiser settings are training settings "
            "now; read as training settings",
            source,
            ", ".join(moved),
        )
    return training, execution


def _unknown_error(cls: type, unknown: list[str], source: str) -> ConfigError:
    known = set(_field_names(cls))
    if _has_model(cls):
        known |= set(_field_names(ModelConfig))
    parts = [f"{k!r}{_suggest(k, known)}" for k in unknown]
    return ConfigError(
        f"{source}: unknown key(s) for {cls.__name__}: {', '.join(parts)}; "
        f"known keys: {', '.join(sorted(known))}"
    )


def _split(cls: type, data: Mapping[Any, Any], source: str) -> tuple[dict, dict]:
    """Split input for ``cls`` into (own fields, model fields), rejecting unknown keys.

    Model fields may come as a nested ``model:`` mapping (or ModelConfig) or flat.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping for {cls.__name__}, found {type(data).__name__}"
        )
    own = _canonical_items(data, source)
    model: dict[str, Any] = {}
    if _has_model(cls):
        nested = own.pop("model", None)
        if isinstance(nested, ModelConfig):
            model = to_dict(nested)
        elif isinstance(nested, Mapping):
            model = _canonical_items(nested, f"{source} [model]")
        elif nested is not None:
            raise ConfigError(
                f"{source}: {cls.__name__}.model: expected a mapping of model settings, "
                f"found {nested!r}"
            )
        model_names = set(_field_names(ModelConfig))
        _move_keys(
            [k for k in own if k in model_names],
            own,
            model,
            lambda key, kept, given: ConfigError(
                f"{source}: {key!r} is given both flat ({given!r}) and under model: "
                f"({kept!r}); give it once"
            ),
        )
    unknown = [k for k in own if k not in _field_names(cls)]
    if unknown:
        raise _unknown_error(cls, unknown, source)
    return own, model


def _build(cls: type[C], data: Mapping[Any, Any], source: str | None) -> C:
    """from_dict without the source prefix on errors (used for nested configs)."""
    own, model = _split(cls, data, source or "<dict>")
    if _has_model(cls):
        own["model"] = ModelConfig(**model)
    return cls(**own)


def from_dict(cls: type[C], data: Mapping[str, Any], *, source: str = "<dict>") -> C:
    """Build a config from a (possibly flat, possibly legacy-keyed) mapping.

    Model keys may be nested under ``model:`` or mixed in flat. Errors name ``source``.
    """
    if cls not in CONFIG_CLASSES:
        raise TypeError(f"from_dict expects one of the config classes, got {cls!r}")
    try:
        return _build(cls, data, source)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from None


# --------------------------------------------------------------------------------------
# YAML I/O
# --------------------------------------------------------------------------------------


def config_sections(
    training: TrainingConfig, execution: ExecutionConfig | None = None
) -> dict[str, dict[str, Any]]:
    """``{"model", "training", "execution"}`` as plain dicts (``training`` without ``model``):
    the layout of resolved-config files, model archives and Lightning hyper-parameters."""
    return {
        "model": asdict(training.model),
        "training": {k: v for k, v in asdict(training).items() if k != "model"},
        "execution": asdict(execution or ExecutionConfig()),
    }


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last,
    silently: a config edited by hand would then train with a setting nobody sees)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (first at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file gives ``{}``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: expected a YAML file, found a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping (key: value lines) at the top level, "
            f"found {type(data).__name__}"
        )
    return data


def _plain(obj: Any) -> Any:
    """Turn configs (possibly inside dicts/lists) into plain YAML-safe data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_dict(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def save_yaml(cfg_or_dict: Any, path: str | os.PathLike[str]) -> Path:
    """Write a config (or a dict of configs/values) as YAML, atomically.

    The text goes to a temporary file in the target directory first and is then renamed
    over the target, so readers never see a half-written file.
    """
    text = yaml.safe_dump(_plain(cfg_or_dict), sort_keys=False, default_flow_style=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _owners(key: str) -> list[str]:
    """Sections whose config class has a field called ``key``."""
    return [s for s, cls in _SECTION_CLASS.items() if key in _field_names(cls)]


def _all_known_keys() -> set[str]:
    known = set(SECTIONS) | set(LEGACY_KEYS)
    for cls in CONFIG_CLASSES:
        known |= set(_field_names(cls))
    return known


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the shipped recipe of that name (``cpu_quick`` ->
    ``ptychopinn/recipes/cpu_quick.yaml``) when no such file exists."""
    path = Path(path)
    recipe = RECIPE_DIR / f"{path}.yaml"
    if not path.exists() and path.name == str(path) and recipe.is_file():
        return recipe
    return path


def load_config_file(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Split a YAML config into ``model``/``training``/``inference``/``execution`` sections.

    Top-level flat keys go to every config class that has such a field (e.g. ``n_groups``
    to both training and inference); keys inside a section win over flat ones. Model keys
    given inside ``training:``/``inference:`` stay there under ``model`` so that they apply
    to that run only. Unknown keys are errors.
    """
    path = resolve_config_path(path)
    source = str(path)
    raw = load_yaml(path)
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    sections: dict[str, Mapping[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS and (isinstance(value, Mapping) or value is None):
            sections[key] = value or {}
        elif key in SECTIONS:
            raise ConfigError(
                f"{source}: section {key!r}: expected a mapping, found {type(value).__name__}"
            )
        else:
            flat[key] = value
    if "execution" in sections:
        sections["training"], sections["execution"] = migrate_sections(
            sections.get("training", {}), sections["execution"], source
        )

    unknown: list[str] = []
    for key, value in flat.items():
        name = _current_name(key, source)
        if name is None:
            continue
        owners = _owners(name)
        if key in _LEGACY_SECTION_ONLY:
            owners = [_LEGACY_SECTION_ONLY[key]]
        if not owners:
            unknown.append(key)
        for section in owners:
            if name in out[section] and out[section][name] != value:
                raise ConfigError(
                    f"{source}: {name!r} is given twice with different values "
                    f"({out[section][name]!r} and {value!r})"
                )
            out[section][name] = value
    if unknown:
        parts = [f"{k!r}{_suggest(k, _all_known_keys())}" for k in unknown]
        raise ConfigError(f"{source}: unknown key(s): {', '.join(parts)}")

    for section, content in sections.items():
        cls = _SECTION_CLASS[section]
        own, model = _split(cls, content, f"{source} [{section}]")
        out[section].update(own)
        if section == "model":
            out["model"].update(model)
        elif model:
            out[section]["model"] = model
    return out


def _load(
    cls: type[C],
    section: str,
    path: str | os.PathLike[str] | None,
    overrides: Mapping[str, Any] | None,
) -> C:
    """Merge defaults < YAML section < overrides and build ``cls``."""
    sections = load_config_file(path) if path is not None else {s: {} for s in SECTIONS}
    own = dict(sections[section])
    model = dict(sections["model"])
    model.update(own.pop("model", {}))
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        o_own, o_model = _split(cls, overrides, "overrides")
        own.update(o_own)
        model.update(o_model)
        source = "overrides" if path is None else f"{path} + overrides"
    data = {**own, "model": model} if _has_model(cls) else own
    return from_dict(cls, data, source=source)


def load_training_config(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None
) -> TrainingConfig:
    """TrainingConfig from a YAML file; ``overrides`` (flat or nested) win over the file."""
    return _load(TrainingConfig, "training", path, overrides)


def load_inference_config(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None
) -> InferenceConfig:
    """InferenceConfig from a YAML file; ``overrides`` (flat or nested) win over the file."""
    return _load(InferenceConfig, "inference", path, overrides)


def load_execution_config(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None
) -> ExecutionConfig:
    """ExecutionConfig from a YAML file's ``execution:`` section or flat keys."""
    return _load(ExecutionConfig, "execution", path, overrides)


# --------------------------------------------------------------------------------------
# Legacy params dictionary
# --------------------------------------------------------------------------------------

#: Current field name -> legacy alias names written next to it in a params-style dict.
_LEGACY_ALIASES: dict[str, tuple[str, ...]] = {
    "object_big": ("object.big",),
    "probe_big": ("probe.big",),
    "probe_mask": ("probe.mask",),
    "probe_trainable": ("probe.trainable",),
    "intensity_scale_trainable": ("intensity_scale.trainable",),
    "positions_provided": ("positions.provided",),
    "output_dir": ("output_prefix",),
    "train_data_file": ("train_data_file_path",),
    "test_data_file": ("test_data_file_path",),
}


def update_legacy_dict(d: dict[str, Any], cfg: Any) -> None:
    """Fill a legacy ``params.cfg``-style dict with flat keys and legacy aliases from ``cfg``.

    Unlike the original, ``None`` values are written too, so the dict mirrors the config
    exactly (e.g. ``n_groups=None`` means "all" and must not leave a stale count behind).
    """
    if not isinstance(cfg, CONFIG_CLASSES):
        raise TypeError(f"update_legacy_dict expects a config instance, got {type(cfg).__name__}")
    flat = to_dict(cfg)
    flat.update(flat.pop("model", {}))
    for key, value in flat.items():
        d[key] = value
        for alias in _LEGACY_ALIASES.get(key, ()):
            d[alias] = value
    if "n_groups" in flat:
        d["n_images"] = flat["n_groups"]
        legacy_count = "nimgs_train" if isinstance(cfg, TrainingConfig) else "nimgs_test"
        d[legacy_count] = flat["n_groups"]
