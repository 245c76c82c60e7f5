"""Weights of either backend in the other's layout, and the HDF5 weights file (numpy only).

Both backends name every weight by the PyTorch ``state_dict`` key of the same layer (for
example ``generator.encoder.0.0.weight``), so converting is a per-array layout change:

* convolution kernels: PyTorch ``(out, in, kh, kw)``, TensorFlow ``(kh, kw, in, out)``;
* the global-mixing matrix: PyTorch ``Linear`` ``(out, in)``, Keras ``Dense`` ``(in, out)``;
* everything else (biases, normalisation scales and running statistics, the probe as a
  real ``(2, N, N)`` array, the log intensity scale) is stored alike;
* PyTorch's ``num_batches_tracked`` counters have no TensorFlow twin (they only matter for
  a BatchNorm without momentum, which this network does not use) and are dropped / zeroed.

A TensorFlow archive keeps its weights in ``weights.h5``: one plain numeric dataset per key,
read with h5py, so loading never executes code from the file.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import h5py
import numpy as np

from ptychopinn.errors import ArchiveError

#: PyTorch-only buffers (BatchNorm step counters).
TORCH_ONLY_SUFFIX = ".num_batches_tracked"
_TORCH_TO_TF_AXES = {4: (2, 3, 1, 0), 2: (1, 0)}
_TF_TO_TORCH_AXES = {4: (3, 2, 0, 1), 2: (1, 0)}


def _is_layer_matrix(key: str, ndim: int) -> bool:
    """Convolution kernels and the mixing matrix: the arrays whose axes differ."""
    return key.endswith(".weight") and ndim in _TORCH_TO_TF_AXES


def torch_to_tensorflow(state: Mapping[str, object]) -> dict[str, np.ndarray]:
    """A PyTorch state dict (tensors or arrays) in the TensorFlow layout, as numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key.endswith(TORCH_ONLY_SUFFIX):
            continue
        array = _numpy(value)
        if _is_layer_matrix(key, array.ndim):
            array = np.ascontiguousarray(array.transpose(_TORCH_TO_TF_AXES[array.ndim]))
        out[key] = array
    return out


def tensorflow_to_torch(
    weights: Mapping[str, np.ndarray], torch_keys: list[str] | None = None
) -> dict[str, np.ndarray]:
    """TensorFlow-layout weights in the PyTorch layout; ``torch_keys`` (the model's own
    state-dict keys) adds the ``num_batches_tracked`` counters it expects, as zeros."""
    out: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        array = np.asarray(value)
        if _is_layer_matrix(key, array.ndim):
            array = np.ascontiguousarray(array.transpose(_TF_TO_TORCH_AXES[array.ndim]))
        out[key] = array
    for key in torch_keys or []:
        if key.endswith(TORCH_ONLY_SUFFIX) and key not in out:
            out[key] = np.zeros((), dtype=np.int64)
    return out


def _numpy(value: object) -> np.ndarray:
    detach = getattr(value, "detach", None)
    if detach is not None:  # a torch tensor
        return detach().cpu().numpy()
    return np.asarray(value)


def weights_to_h5_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    """An HDF5 file (bytes) with one dataset per key (keys may contain dots)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for key, value in weights.items():
            f.create_dataset(key, data=np.asarray(value))
    return buffer.getvalue()


def weights_from_h5_bytes(data: bytes, source: str) -> dict[str, np.ndarray]:
    """The arrays of :func:`weights_to_h5_bytes`; anything but numeric datasets is refused."""
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError as exc:
        raise ArchiveError(f"{source}: weights.h5 is not a readable HDF5 file ({exc})") from exc
    out: dict[str, np.ndarray] = {}
    with f:
        for key, item in f.items():
            if not isinstance(item, h5py.Dataset) or item.dtype.kind not in "biuf":
                raise ArchiveError(
                    f"{source}: weights.h5 '{key}': expected a numeric array, found "
                    f"{type(item).__name__} of {getattr(item, 'dtype', 'no dtype')}"
                )
            out[key] = item[()]
    return out
