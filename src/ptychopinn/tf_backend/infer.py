"""Inference with the TensorFlow backend: the network's patches for the shared stitching.

:func:`ptychopinn.workflows.infer.reconstruct` groups, batches, rescales the dose and
stitches for both backends; with a TensorFlow model it calls :func:`patch_predictor` for
the object patches of each batch (:func:`field_predictor` for the amplitudes and phase
gradients of the gradient head).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from ptychopinn.tf_backend import import_tensorflow
from ptychopinn.tf_backend import physics as tfp
from ptychopinn.tf_backend.model import TFPtychoPINN

tf = import_tensorflow()


def patch_predictor(
    model: TFPtychoPINN,
) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """``predict(amplitudes (B, C, N, N), offsets (B, C, 2) or None) -> patches`` complex64.

    The group canvas is sized from each batch's offsets (as the PyTorch model does) and the
    graph is compiled once per batch and canvas shape.
    """

    @tf.function(reduce_retracing=True)
    def run(amplitudes, offsets, canvas_size):
        return model.predict_patches(amplitudes, offsets, training=False, canvas_size=canvas_size)

    def predict(amplitudes: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
        size = None if offsets is None else tfp.canvas_size_for(offsets, model.config.N)
        patches = run(amplitudes.astype(np.float32, copy=False), offsets, size)
        return np.asarray(patches.numpy(), dtype=np.complex64)

    return predict


def field_predictor(model: TFPtychoPINN) -> Callable[[np.ndarray], np.ndarray]:
    """For the gradient head: ``predict(amplitudes (B, C, N, N)) -> (B, 1, 2, N, N)``
    complex64, the anchor pattern's ``[amplitude, gx + i gy]`` (stitched and integrated by
    the shared inference)."""

    @tf.function(reduce_retracing=True)
    def run(amplitudes):
        amp, grad = model.predict_fields(amplitudes, training=False)
        gradients = tf.complex(grad[:, :1, 0], grad[:, :1, 1])
        return tf.stack([tf.complex(amp[:, :1], tf.zeros_like(amp[:, :1])), gradients], axis=2)

    def predict(amplitudes: np.ndarray) -> np.ndarray:
        return np.asarray(run(amplitudes.astype(np.float32, copy=False)).numpy(), np.complex64)

    return predict


def torch_twin(model: TFPtychoPINN):
    """The PyTorch model with ``model``'s weights, converted in memory (eval mode)."""
    from ptychopinn.bundle import torch_state_from_tensorflow
    from ptychopinn.model.pinn import PtychoPINN

    N = model.config.N
    twin = PtychoPINN(model.config, np.ones((N, N), dtype=np.complex64), 1.0)
    state = torch_state_from_tensorflow(model.weight_arrays(), list(twin.state_dict()))
    twin.load_state_dict(state)
    return twin.eval()


@contextlib.contextmanager
def statistics_from(model: TFPtychoPINN, run_sample: Callable[[object], None]) -> Iterator[bool]:
    """:func:`ptychopinn.model.scan_statistics.statistics_from` for a TensorFlow model: the
    statistics are estimated on its PyTorch twin (``run_sample(twin)`` passes the sample
    through it), so both backends predict with the same ones, and are assigned to the
    Keras layers until the block ends."""
    from ptychopinn.model import scan_statistics
    from ptychopinn.tf_backend.layout import torch_to_tensorflow

    twin = torch_twin(model)
    with scan_statistics.statistics_from(twin.generator, lambda: run_sample(twin)) as adapted:
        if not adapted:
            yield False
            return
        stored = model.weight_arrays()
        model.load_weight_arrays(torch_to_tensorflow(twin.state_dict()), "scan statistics")
        try:
            yield True
        finally:
            model.load_weight_arrays(stored, "stored statistics")
