"""``ptycho_torch.model.PtychoPINN_Lightning``: the core Lightning module, built from torch configs.

It is the core :class:`~ptychopinn.model.lightning_module.PINNLightningModule` (same network,
physics, losses, ``loss_name``/``val_loss_name``); only the constructor differs. Its
checkpoints carry the four ``ptycho_torch`` configs as plain dicts (``hyper_parameters``), so
``load_from_checkpoint`` works with torch's safe ``weights_only`` loading and
:meth:`ptycho_torch.api.base_api.PtychoModel._extract_configs_from_checkpoint` can read them
without building the model.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from ptycho_torch.config_params import (
    DataConfig,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    config_from_dict,
)
from ptycho_torch.translate import Configs, core_execution_config, core_training_config
from ptychopinn.config import config_sections
from ptychopinn.data.types import PtychoData
from ptychopinn.model.lightning_module import PINNLightningModule

__all__ = ["PtychoPINN_Lightning"]


def _configs(model_config: Any, data_config: Any, training_config: Any, inference_config: Any):
    """Config objects from objects, dicts (checkpoint hyper-parameters) or None (defaults)."""

    def build(cls: type, value: Any) -> Any:
        return cls() if value is None else config_from_dict(cls, value, source="checkpoint")

    return Configs(
        data=build(DataConfig, data_config),
        model=build(ModelConfig, model_config),
        training=build(TrainingConfig, training_config),
        inference=build(InferenceConfig, inference_config),
    )


class PtychoPINN_Lightning(PINNLightningModule):
    """The PtychoPINN Lightning module configured by ``ptycho_torch`` configs.

    ``probe`` and ``intensity_scale`` come from the training data (see :meth:`from_data`);
    without them the module holds placeholders until a checkpoint's weights are loaded.
    ``torch_configs`` holds the four configs it was built with.
    """

    def __init__(
        self,
        model_config: ModelConfig | dict | None = None,
        data_config: DataConfig | dict | None = None,
        training_config: TrainingConfig | dict | None = None,
        inference_config: InferenceConfig | dict | None = None,
        intensity_scale: float = 1.0,
        probe: np.ndarray | None = None,
    ) -> None:
        cfg = _configs(model_config, data_config, training_config, inference_config)
        sections = config_sections(
            core_training_config(cfg), core_execution_config(cfg, device="cpu", quiet=True)
        )
        super().__init__(
            sections["model"],
            sections["training"],
            sections["execution"],
            intensity_scale=intensity_scale,
            probe=probe,
        )
        self.torch_configs = cfg
        self.save_hyperparameters(
            {
                "model_config": asdict(cfg.model),
                "data_config": asdict(cfg.data),
                "training_config": asdict(cfg.training),
                "inference_config": asdict(cfg.inference),
                "intensity_scale": float(intensity_scale),
            },
            ignore=["probe"],
        )

    @property
    def data_config(self) -> DataConfig:
        return self.torch_configs.data

    @property
    def inference_config(self) -> InferenceConfig:
        return self.torch_configs.inference

    @classmethod
    def from_data(cls, cfg: Configs, data: PtychoData) -> PtychoPINN_Lightning:
        """A fresh module whose probe and initial intensity scale come from ``data``."""
        from ptychopinn.workflows.train import build_module

        core = build_module(
            data, core_training_config(cfg), core_execution_config(cfg, device="cpu", quiet=True)
        )
        return cls(
            cfg.model,
            cfg.data,
            cfg.training,
            cfg.inference,
            intensity_scale=float(core.model.intensity_scale.detach()),
            probe=data.probe,
        )
