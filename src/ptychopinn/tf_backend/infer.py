"""Inference with the TensorFlow backend: the network's patches for the shared stitching.

:func:`ptychopinn.workflows.infer.reconstruct` groups, batches, rescales the dose and
stitches for both backends; with a TensorFlow model it calls :func:`patch_predictor` for
the object patches of each batch (:func:`field_predictor` for the amplitudes and phase
gradients of the gradient head).
"""

from __future__ import annotations

from collections.abc import Callable

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
