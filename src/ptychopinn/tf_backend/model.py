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
from ptychopinn.errors import ConfigError
from ptychopinn.model.pinn import OVERLAP_WEIGHT_FLOOR, normalise_probe
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
        if config.phase_head != "phase":
            raise ConfigError(
                f"phase_head: the tensorflow backend predicts the phase itself ('phase'), "
                f"found {config.phase_head!r}; train and reconstruct it with the pytorch backend"
            )
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
        intensity = tf.square(tf.abs(tf.stop_gradient(self._probe_for(probe))))
        peak = tf.reduce_max(intensity, axis=(-2, -1), keepdims=True)
        return intensity / peak + OVERLAP_WEIGHT_FLOOR

    def apply_overlap_constraint(
        self, patches, offsets, probe=None, canvas_size: int | None = None
    ):
        """Merge each group's C patches into one illumination-weighted canvas and cut them
        out again. ``canvas_size`` fixes the canvas (one graph for a whole training run);
        None sizes it from ``offsets`` like the PyTorch model (eager tensors only)."""
        N = patches.shape[-1]
        if canvas_size is None:
            canvas_size = tfp.canvas_size_for(np.asarray(offsets), N)
        weights = tf.cast(self.overlap_weights(probe), patches.dtype) * tf.ones_like(patches)
        numerator = tfp.patches_to_group_canvas(patches * weights, offsets, canvas_size)
        denominator = tf.math.real(tfp.patches_to_group_canvas(weights, offsets, canvas_size))
        canvas = numerator / tf.cast(tf.maximum(denominator, OVERLAP_WEIGHT_FLOOR), numerator.dtype)
        return tfp.group_canvas_to_patches(canvas, offsets, N)

    def predict_patches(
        self, amplitudes, offsets=None, probe=None, *, training=False, canvas_size=None
    ):
        """Object patches (B, C, N, N) complex64 for measured amplitudes (B, C, N, N)."""
        amplitudes = tf.convert_to_tensor(amplitudes, tf.float32)
        x = amplitudes * self.intensity_scale
        if self.config.per_pattern_network:  # one pass per pattern, as a batch of B * C
            shape = tf.shape(x)
            flat = tf.reshape(x, [-1, 1, shape[2], shape[3]])
            amp, phase = self.generator(flat, training=training)
            out = tf.concat([shape[:2], tf.shape(amp)[2:]], axis=0)
            amp, phase = tf.reshape(amp, out), tf.reshape(phase, out)
        else:
            amp, phase = self.generator(x, training=training)
        patches = tf.complex(amp * tf.cos(phase), amp * tf.sin(phase))
        if self.config.object_big and patches.shape[1] > 1 and offsets is not None:
            offsets = tf.convert_to_tensor(offsets, tf.float32)
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
