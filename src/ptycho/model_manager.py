"""``ptycho.model_manager``: save the session's trained model; wrap loaded models.

The legacy ``save(out_prefix)`` takes no model argument: it saves "the" model of the session.
:func:`ptycho.workflows.components.run_cdi_example` therefore records the model it trains here
(the only global state besides ``ptycho.params.cfg``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptychopinn.bundle import save_model
from ptychopinn.config import ExecutionConfig, TrainingConfig
from ptychopinn.errors import DataValidationError
from ptychopinn.model.pinn import PtychoPINN

logger = logging.getLogger(__name__)

__all__ = ["InferenceModel", "save"]

_session: dict[str, Any] = {}


def remember(
    model: PtychoPINN, training: TrainingConfig, execution: ExecutionConfig | None = None
) -> None:
    """Record the model that :func:`save` will write (called after training)."""
    _session.update(model=model, training=training, execution=execution)


def save(out_prefix: str | os.PathLike[str]) -> Path:
    """Write the session's trained model to ``<out_prefix>/wts.h5.zip`` and return the path."""
    if "model" not in _session:
        raise RuntimeError(
            "ptycho.model_manager.save: no model has been trained in this session "
            "(call ptycho.workflows.components.run_cdi_example first)"
        )
    path = save_model(
        _session["model"],
        out_prefix,
        training_config=_session["training"],
        execution_config=_session["execution"],
    )
    logger.info("saved model archive %s", path)
    return path


class InferenceModel:
    """A trained model with the legacy Keras-style ``predict([X * intensity_scale, offsets])``."""

    def __init__(
        self, model: PtychoPINN, *, supervised: bool = False, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.supervised = supervised

    @property
    def N(self) -> int:
        return int(self.model.config.N)

    @property
    def gridsize(self) -> int:
        return int(self.model.config.gridsize)

    @property
    def intensity_scale(self) -> float:
        """The scale the legacy caller multiplies ``X`` by (``ptycho.params.get``)."""
        return float(self.model.intensity_scale.detach())

    def _check_inputs(self, x: np.ndarray, offsets: np.ndarray | None) -> None:
        g, n, _, c = x.shape
        if n != self.N:
            raise DataValidationError(
                f"predict: patterns are {n}x{n} but the model was trained for N={self.N}"
            )
        # A per-pattern network reads each pattern alone, so it takes any grouping.
        if c != self.gridsize**2 and not self.model.config.per_pattern_network:
            raise DataValidationError(
                f"predict: inputs have C={c} positions per group but the model was trained with "
                f"gridsize={self.gridsize} (C={self.gridsize**2}); group the data with "
                f"gridsize={self.gridsize} (Ptychodus: [PtychoPINNModel] GridSize)"
            )
        if offsets is not None and offsets.shape != (g, c, 2):
            raise DataValidationError(
                f"predict: expected offsets (G, 1, 2, C) = ({g}, 1, 2, {c}), found {offsets.shape}"
            )

    @torch.inference_mode()
    def predict(self, inputs: Any, batch_size: int | None = 64, verbose: int = 0) -> np.ndarray:
        """Object patches (G, N, N, C) complex64 for ``[X * intensity_scale, local_offsets]``.

        ``X`` is (G, N, N, C) (or (G, N, N)) amplitudes times this model's intensity scale;
        ``local_offsets`` (G, 1, 2, C) member offsets from the group centre.
        """
        del verbose
        if isinstance(inputs, list | tuple):
            x, offsets = (inputs[0], inputs[1]) if len(inputs) > 1 else (inputs[0], None)
        else:
            x, offsets = inputs, None
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[1] != x.shape[2]:
            raise DataValidationError(
                f"predict: expected X of shape (G, N, N, C), found {np.shape(x)}"
            )
        if offsets is not None:
            offsets = np.asarray(offsets, dtype=np.float32)
            if offsets.ndim == 4 and offsets.shape[1] == 1:
                offsets = np.transpose(offsets[:, 0], (0, 2, 1))
        self._check_inputs(x, offsets)
        if self.supervised:
            offsets = None
        scale = self.intensity_scale
        batch_size = max(1, int(batch_size or 64))
        out = []
        for start in range(0, x.shape[0], batch_size):
            amps = torch.from_numpy(x[start : start + batch_size]).permute(0, 3, 1, 2) / scale
            off = None
            if offsets is not None:
                off = torch.from_numpy(offsets[start : start + batch_size]).to(self.device)
            patches = self.model.predict_patches(amps.to(self.device), off)
            out.append(patches.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out).astype(np.complex64)
