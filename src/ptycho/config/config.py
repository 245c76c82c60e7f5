"""``ptycho.config.config``: the core's typed configs, as the legacy API names them.

Importable without torch: Ptychodus builds these configs in its parent process and pickles
them to the child, so they are plain dataclasses defined at module level.

Differences from the core classes: ``ModelConfig.N = 0`` is accepted and means "not known yet";
Ptychodus builds its training config before it has seen the data and sets ``model.N`` from the
training file in the child. :class:`TrainingConfig` defaults to ``n_groups=None`` (train on every
scan position), which is what a Ptychodus user expects from "train on this scan".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ptychopinn.config import InferenceConfig as _CoreInferenceConfig
from ptychopinn.config import ModelConfig as _CoreModelConfig
from ptychopinn.config import TrainingConfig as _CoreTrainingConfig
from ptychopinn.config import update_legacy_dict

__all__ = ["ModelConfig", "TrainingConfig", "InferenceConfig", "update_legacy_dict"]


@dataclass
class ModelConfig(_CoreModelConfig):
    """The core :class:`ptychopinn.config.ModelConfig`; ``N=0`` means "take N from the data"."""

    ALLOWED_N: ClassVar[tuple[int, ...]] = (0, *_CoreModelConfig.ALLOWED_N)


@dataclass
class TrainingConfig(_CoreTrainingConfig):
    """The core :class:`ptychopinn.config.TrainingConfig` with this package's ModelConfig."""

    model: ModelConfig = field(default_factory=ModelConfig)
    n_groups: int | None = None


@dataclass
class InferenceConfig(_CoreInferenceConfig):
    """The core :class:`ptychopinn.config.InferenceConfig` with this package's ModelConfig."""

    model: ModelConfig = field(default_factory=ModelConfig)
