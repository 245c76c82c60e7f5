"""``ptycho.loader``: the legacy data container built from grouped data.

The container's ``X`` holds measured amplitudes (sqrt counts), the engine's native input:
legacy callers feed ``model.predict([X * intensity_scale, local_offsets])`` and the model
returned by :func:`ptycho.workflows.components.load_inference_bundle` divides the same
``intensity_scale`` back out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptycho._adapt import scan_canvas_shape
from ptychopinn.errors import ConfigError, DataValidationError

__all__ = ["PositionArray", "PtychoDataContainer", "load"]


class PositionArray(np.ndarray):
    """A float64 position array that remembers the object canvas ``(H, W)`` it refers to.

    :func:`ptycho.tf_helper.reassemble_position` reads ``canvas_shape`` so that the stitched
    object has the input object's shape, and thus its geometry, in Ptychodus.
    """

    canvas_shape: tuple[int, int] | None

    def __new__(cls, values: Any, canvas_shape: tuple[int, int] | None = None) -> PositionArray:
        obj = np.asarray(values, dtype=np.float64).view(cls)
        obj.canvas_shape = canvas_shape
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.canvas_shape = getattr(obj, "canvas_shape", None)


@dataclass
class PtychoDataContainer:
    """Grouped data ready for the model (legacy field names).

    X: (G, N, N, C) float32 amplitudes. local_offsets: (G, 1, 2, C) member offsets from the
    group centre. global_offsets: (G, 1, 2, C) absolute member positions ``[x, y]`` in object
    pixels (for C = 1 the legacy group centres), carrying the canvas shape.
    """

    X: np.ndarray
    local_offsets: np.ndarray
    global_offsets: PositionArray
    nn_indices: np.ndarray
    probe: np.ndarray
    Y: np.ndarray | None = None
    norm_Y_I: float = 1.0

    @property
    def coords_nominal(self) -> np.ndarray:
        return self.local_offsets

    @property
    def coords_true(self) -> np.ndarray:
        return self.local_offsets

    @property
    def Y_I(self) -> np.ndarray | None:
        return None if self.Y is None else np.abs(self.Y)

    @property
    def Y_phi(self) -> np.ndarray | None:
        return None if self.Y is None else np.angle(self.Y)

    def __len__(self) -> int:
        return int(self.X.shape[0])


def load(
    cb: Callable[[], dict[str, Any]],
    probeGuess: Any,
    which: str | None = None,
    create_split: bool = False,
) -> PtychoDataContainer:
    """Build the container from ``cb()``, a :meth:`RawData.generate_grouped_data` result.

    ``which``/``create_split`` (the legacy train/test split of one dataset) are not
    supported: split the scan into separate files instead.
    """
    if create_split or which not in (None, "train", "test"):
        raise ConfigError(
            f"ptycho.loader.load: expected create_split=False and which=None, found "
            f"create_split={create_split!r}, which={which!r} (split the data into separate "
            "train/test files instead)"
        )
    dset = cb()
    missing = [k for k in ("diffraction", "coords_relative", "coords_nn") if k not in dset]
    if missing:
        raise DataValidationError(
            f"ptycho.loader.load: expected a generate_grouped_data() dictionary, found no "
            f"key(s) {missing}"
        )
    X = np.asarray(dset["diffraction"], dtype=np.float32)
    coords_nn = np.asarray(dset["coords_nn"], dtype=np.float64)
    obj = dset.get("objectGuess")
    if obj is not None:
        canvas = tuple(int(s) for s in np.shape(obj))
    else:
        flat = coords_nn.transpose(0, 3, 2, 1).reshape(-1, 2)
        canvas = scan_canvas_shape(flat[:, 0], flat[:, 1], X.shape[1])
    return PtychoDataContainer(
        X=X,
        local_offsets=np.asarray(dset["coords_relative"], dtype=np.float64),
        global_offsets=PositionArray(coords_nn, canvas_shape=canvas),
        nn_indices=np.asarray(dset.get("nn_indices")),
        probe=np.asarray(probeGuess),
        Y=dset.get("Y"),
    )
