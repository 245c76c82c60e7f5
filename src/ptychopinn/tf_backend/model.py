"""The physics-informed model in TensorFlow: the twin of :class:`ptychopinn.model.pinn.PtychoPINN`.

Generator, overlap constraint (illumination-weighted group canvas), probe, far field and
intensity scale, in the same units: the network sees the measured amplitudes times the
intensity scale ``s``, the probe is normalised to ``||P|| = N/2`` and the predicted
amplitude is ``|F(P · O)| / s``. Weights are keyed by the PyTorch ``state_dict`` names
(:meth:`TFPtychoPINN.keyed_weights`), so :mod:`.layout` converts them either way.
"""

from __future__ import annotations

import math

import numpy as np

from ptychopinn.config import ModelConfig
from ptychopinn.model.pinn import OVERLAP_WEIGHT_BLUR, OVERLAP_WEIGHT_FLOOR, normalise_probe
from ptychopinn.tf_backend import import_tensorflow
from ptychopinn.tf_backend import physics as tfp
from ptychopinn.tf_backend.network import Generator

tf = import_tensorflow()
import keras  # noqa: E402


class TFPtychoPINN(keras.Model):
    """Generator plus differentiable physics: measured amplitudes in, predictions out."""

    #: Read by the shared inference and archive code to pick the backend's path.
    backend = "tensorflow"

    def __init__(
        self,
        config: ModelConfig,
        probe: np.ndarray,
        intensity_scale: float,
        *,
        probe_trainable: bool = False,
        intensity_scale_trainable: bool = True,
        reference_energy: float | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.reference_energy = reference_energy
        N = config.N
        self.generator = Generator(
            N,
            config.network_channels,
            config.n_filters_scale,
            config.amp_activation,
            full_size=config.probe_big or not config.pad_object,
            normalization=config.normalization,
            global_mixing=config.global_mixing,
            phase_head=config.phase_head,
        )
        p = normalise_probe(probe, N).numpy()
        if p.shape != (N, N):
            raise ValueError(f"probe must be ({N}, {N}), found {p.shape}")
        probe_ri = np.stack([p.real, p.imag]).astype(np.float32)
        self.probe_ri = self.add_weight(
            shape=(2, N, N),
            initializer=keras.initializers.Constant(probe_ri),
            trainable=probe_trainable,
            name="probe_ri",
        )
        self.log_intensity_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(intensity_scale)),
            trainable=intensity_scale_trainable,
            name="log_intensity_scale",
        )
        self.probe_mask = tfp.circular_mask(N) if config.probe_mask else None

    # -- weights ---------------------------------------------------------------------------
    def keyed_weights(self) -> list[tuple[str, object]]:
        """Every weight and running statistic with its PyTorch ``state_dict`` key."""
        return [
            *self.generator.keyed_weights(),
            ("probe_ri", self.probe_ri),
            ("log_intensity_scale", self.log_intensity_scale),
        ]

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays in the TensorFlow layout, keyed like PyTorch's."""
        return {key: np.asarray(var.numpy()) for key, var in self.keyed_weights()}

    def load_weight_arrays(self, weights: dict[str, np.ndarray], source: str) -> None:
        """Assign TensorFlow-layout arrays (all keys and shapes must match)."""
        from ptychopinn.model.state_check import require_matching_state

        pairs = self.keyed_weights()
        require_matching_state({k: v for k, v in pairs}, weights, source)
        for key, var in pairs:
            var.assign(np.asarray(weights[key], dtype=np.float32))

    # -- physics ---------------------------------------------------------------------------
    @property
    def probe(self):
        """The normalised complex probe (N, N)."""
        return tf.complex(self.probe_ri[0], self.probe_ri[1])

    def probe_array(self) -> np.ndarray:
        return np.asarray(self.probe.numpy(), dtype=np.complex64)

    @property
    def intensity_scale(self):
        return tf.exp(self.log_intensity_scale)

    def _probe_for(self, probe=None):
        return self.probe if probe is None else probe[:, None]

    def overlap_weights(self, probe=None):
        intensity = tfp.gaussian_blur(
            tf.square(tf.abs(tf.stop_gradient(self._probe_for(probe)))), OVERLAP_WEIGHT_BLUR
        )
        peak = tf.reduce_max(intensity, axis=(-2, -1), keepdims=True)
        return intensity / peak + OVERLAP_WEIGHT_FLOOR

    def average_on_group_canvas(self, values, offsets, probe=None, canvas_size=None):
        """Each of ``values`` (B, C, N, N) complex averaged over its group on one canvas,
        every patch weighted by its illumination. ``canvas_size`` fixes the canvas (one
        graph for a whole training run); None sizes it from ``offsets`` like the PyTorch
        model (eager tensors only)."""
        N = values[0].shape[-1]
        if canvas_size is None:
            canvas_size = tfp.canvas_size_for(np.asarray(offsets), N)
        weights = tf.cast(self.overlap_weights(probe), tf.complex64) * tf.ones_like(values[0])
        cover = tf.math.real(tfp.patches_to_group_canvas(weights, offsets, canvas_size))
        cover = tf.cast(tf.maximum(cover, OVERLAP_WEIGHT_FLOOR), tf.complex64)
        return [
            tfp.patches_to_group_canvas(v * weights, offsets, canvas_size) / cover for v in values
        ]

    def apply_overlap_constraint(
        self, patches, offsets, probe=None, canvas_size: int | None = None
    ):
        """Merge each group's C patches into one illumination-weighted canvas and cut them
        out again."""
        (canvas,) = self.average_on_group_canvas([patches], offsets, probe, canvas_size)
        return tfp.group_canvas_to_patches(canvas, offsets, patches.shape[-1])

    def merge_gradient_patches(self, amp, gradients, offsets, probe=None, canvas_size=None):
        """The gradient head's overlap constraint: amplitudes (B, C, N, N) and phase
        gradients (B, C, 2, N, N) merged on each group's canvas, the gradients integrated
        there, the complex patches cut out again."""
        grad = tf.complex(gradients[:, :, 0], gradients[:, :, 1])
        amplitude, grad = self.average_on_group_canvas(
            [tf.complex(amp, tf.zeros_like(amp)), grad], offsets, probe, canvas_size
        )
        phase = tfp.integrate_gradient(tf.math.real(grad), tf.math.imag(grad))
        canvas = _polar(tf.maximum(tf.math.real(amplitude), 0.0), phase)
        return tfp.group_canvas_to_patches(canvas, offsets, amp.shape[-1])

    def predict_fields(self, amplitudes, *, training=False):
        """The network's raw output for amplitudes (B, C, N, N): object amplitude (B, C, N, N)
        and phase (B, C, N, N), or with the gradient head its x/y gradients (B, C, 2, N, N)."""
        amplitudes = tf.convert_to_tensor(amplitudes, tf.float32)
        x = amplitudes * self.intensity_scale
        shape = tf.shape(x)
        if self.config.per_pattern_network:  # one pass per pattern, as a batch of B * C
            flat = tf.reshape(x, [-1, 1, shape[2], shape[3]])
            amp, phase = self.generator(flat, training=training)
        else:
            amp, phase = self.generator(x, training=training)
        size = tf.shape(amp)[2:]
        amp = tf.reshape(amp, tf.concat([shape[:2], size], axis=0))
        if self.config.phase_head != "gradient":
            return amp, tf.reshape(phase, tf.concat([shape[:2], size], axis=0))
        if self.config.per_pattern_network:
            return amp, tf.reshape(phase, tf.concat([shape[:2], [2], size], axis=0))
        phase = tf.reshape(phase, tf.concat([shape[:1], [2], shape[1:2], size], axis=0))
        return amp, tf.transpose(phase, [0, 2, 1, 3, 4])

    def predict_patches(
        self, amplitudes, offsets=None, probe=None, *, training=False, canvas_size=None
    ):
        """Object patches (B, C, N, N) complex64 for measured amplitudes (B, C, N, N)."""
        amp, phase = self.predict_fields(amplitudes, training=training)
        merge = self.config.object_big and amp.shape[1] > 1 and offsets is not None
        if merge:
            offsets = tf.convert_to_tensor(offsets, tf.float32)
        if self.config.phase_head == "gradient":
            if merge:
                return self.merge_gradient_patches(amp, phase, offsets, probe, canvas_size)
            return _polar(amp, tfp.integrate_gradient(phase[:, :, 0], phase[:, :, 1]))
        patches = _polar(amp, phase)
        if merge:
            patches = self.apply_overlap_constraint(patches, offsets, probe, canvas_size)
        return patches

    def diffraction_amplitude(self, patches, probe=None):
        exit_wave = tfp.illuminate(
            patches,
            self._probe_for(probe),
            probe_mask=self.probe_mask,
            smoothing_sigma=self.config.gaussian_smoothing_sigma,
        )
        return tf.abs(tfp.far_field(exit_wave)) / self.intensity_scale

    def call(self, amplitudes, offsets=None, probe=None, training=False, canvas_size=None):
        patches = self.predict_patches(
            amplitudes, offsets, probe, training=training, canvas_size=canvas_size
        )
        return patches, self.diffraction_amplitude(patches, probe)


def _polar(amplitude, phase):
    return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))
