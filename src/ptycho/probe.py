"""``ptycho.probe``: the legacy global probe (kept in ``ptycho.params.cfg['probe']``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ptycho import params
from ptycho._adapt import dominant_probe_mode
from ptychopinn.errors import DataValidationError

__all__ = ["set_probe_guess", "get_probe"]


def set_probe_guess(X_train: Any = None, probe_guess: Any = None) -> np.ndarray:
    """Record the probe for legacy callers and return it as (N, N) complex64.

    ``X_train`` is accepted for compatibility and unused: the probe is never estimated from
    the data here. A (modes, N, N) probe keeps mode 0 (with a warning). The engine itself
    takes its probe from the training data or the model archive, not from this global.
    """
    del X_train
    if probe_guess is None:
        raise DataValidationError(
            "set_probe_guess: expected an (N, N) complex probe, found None (estimating a probe "
            "from the diffraction data is not supported)"
        )
    probe = dominant_probe_mode(np.asarray(probe_guess), "set_probe_guess: probe_guess")
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise DataValidationError(
            f"set_probe_guess: expected a square (N, N) probe, found shape {probe.shape}"
        )
    if not np.all(np.isfinite(probe)):
        raise DataValidationError("set_probe_guess: expected finite probe values, found NaN/Inf")
    probe = probe.astype(np.complex64)
    params.cfg["probe"] = probe
    return probe


def get_probe() -> np.ndarray:
    """The probe recorded by :func:`set_probe_guess`."""
    return params.get("probe")
