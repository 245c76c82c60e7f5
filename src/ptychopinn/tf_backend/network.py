"""The PtychoPINN generator in Keras: the layout of :mod:`ptychopinn.model.network`.

Same blocks, filter counts, activations, normalisation, global mixing and flat-phase start;
convolutions run channels-last (NHWC, TensorFlow's native layout on CPU and GPU) and the
generator takes and returns (B, C, N, N) like its PyTorch twin. Every weight is registered
under the PyTorch ``state_dict`` key of the same layer (:meth:`Generator.keyed_weights`),
which is what the weight converter and the archive rely on.

Initialisation follows PyTorch's defaults (uniform in ``±1/sqrt(fan_in)`` for kernels and
biases), so both backends start from the same distribution for a given architecture.
"""

from __future__ import annotations

import math

from ptychopinn.model.network import encoder_filters
from ptychopinn.tf_backend import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow, which selects Keras' backend)

#: PyTorch's BatchNorm momentum 0.1 is Keras' 0.9; both use eps 1e-5 here.
_BN_MOMENTUM = 0.9
_NORM_EPS = 1e-5

_AMPLITUDE_ACTIVATIONS = {
    "sigmoid": tf.sigmoid,
    "swish": tf.nn.silu,
    "silu": tf.nn.silu,
    "softplus": tf.nn.softplus,
    "relu": tf.nn.relu,
}


def _conv(
    filters: int, fan_in: int, use_bias: bool = True, zero: bool = False
) -> keras.layers.Conv2D:
    if zero:
        kernel_init, bias_init = "zeros", "zeros"
    else:
        bound = 1.0 / math.sqrt(fan_in)
        kernel_init = keras.initializers.RandomUniform(-bound, bound)
        bias_init = keras.initializers.RandomUniform(-bound, bound)
    return keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=kernel_init,
        bias_initializer=bias_init,
    )


def _norm(kind: str, channels: int) -> keras.layers.Layer | None:
    if kind == "batch":
        return keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_NORM_EPS)
    if kind == "group":
        return keras.layers.GroupNormalization(groups=min(8, channels), epsilon=_NORM_EPS)
    return None


def _layer_weights(prefix: str, layer: keras.layers.Layer) -> list[tuple[str, object]]:
    """(torch key, variable) pairs of one convolution, normalisation or dense layer."""
    if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
        pairs = [(f"{prefix}.weight", layer.kernel)]
        if layer.use_bias:
            pairs.append((f"{prefix}.bias", layer.bias))
        return pairs
    if isinstance(layer, keras.layers.BatchNormalization):
        return [
            (f"{prefix}.weight", layer.gamma),
            (f"{prefix}.bias", layer.beta),
            (f"{prefix}.running_mean", layer.moving_mean),
            (f"{prefix}.running_var", layer.moving_variance),
        ]
    if isinstance(layer, keras.layers.GroupNormalization):
        return [(f"{prefix}.weight", layer.gamma), (f"{prefix}.bias", layer.beta)]
    raise TypeError(f"no weight mapping for {type(layer).__name__}")


class ConvBlock(keras.layers.Layer):
    """Two 3×3 convolutions with ReLU (and optional normalisation), size-preserving."""

    def __init__(self, c_in: int, c_out: int, normalization: str, prefix: str) -> None:
        super().__init__()
        bias = normalization == "none"
        self.prefix = prefix
        self.conv1 = _conv(c_out, 9 * c_in, bias)
        self.norm1 = _norm(normalization, c_out)
        self.conv2 = _conv(c_out, 9 * c_out, bias)
        self.norm2 = _norm(normalization, c_out)

    def call(self, x, training=False):
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2)):
            x = conv(x)
            if norm is not None:
                x = norm(x, training=training)
            x = tf.nn.relu(x)
        return x

    def keyed_weights(self) -> list[tuple[str, object]]:
        # nn.Sequential(conv, norm, relu, conv, norm, relu): indices 0, 1, 3, 4.
        pairs = _layer_weights(f"{self.prefix}.0", self.conv1)
        if self.norm1 is not None:
            pairs += _layer_weights(f"{self.prefix}.1", self.norm1)
        pairs += _layer_weights(f"{self.prefix}.3", self.conv2)
        if self.norm2 is not None:
            pairs += _layer_weights(f"{self.prefix}.4", self.norm2)
        return pairs


class SpatialMixing(keras.layers.Layer):
    """Residual all-to-all map over the bottleneck positions, shared by the channels,
    zero-initialised (starts as the identity)."""

    def __init__(self, size: int, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.mix = keras.layers.Dense(
            size * size, kernel_initializer="zeros", bias_initializer="zeros"
        )

    def call(self, z):
        shape = tf.shape(z)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        # PyTorch flattens (B, C, H*W) row-major over (H, W): the same order here.
        flat = tf.transpose(tf.reshape(z, [b, h * w, c]), [0, 2, 1])
        mixed = tf.nn.relu(self.mix(flat))
        return z + tf.reshape(tf.transpose(mixed, [0, 2, 1]), [b, h, w, c])

    def keyed_weights(self) -> list[tuple[str, object]]:
        return _layer_weights(f"{self.prefix}.mix", self.mix)


class Decoder(keras.layers.Layer):
    """Two convolutions per level, then 2× nearest upsampling; a last convolution (after a
    further upsampling when ``full_size``) and the head's activation."""

    def __init__(
        self,
        filters: list[int],
        c_out: int,
        activation,
        full_size: bool,
        normalization: str,
        prefix: str,
        zero_last: bool = False,
    ) -> None:
        super().__init__()
        self.blocks = []
        c = filters[-1]
        for j, f in enumerate(reversed(filters[:-1])):
            self.blocks.append(ConvBlock(c, f, normalization, f"{prefix}.up.{2 * j}"))
            c = f
        self.full_size = full_size
        self.last = _conv(c_out, 9 * c, zero=zero_last)
        self.last_key = f"{prefix}.last.1" if full_size else f"{prefix}.last"
        self.activation = activation
        self.upsample = keras.layers.UpSampling2D(2, interpolation="nearest")

    def call(self, z, training=False):
        for block in self.blocks:
            z = self.upsample(block(z, training=training))
        if self.full_size:
            z = self.upsample(z)
        out = self.activation(self.last(z))
        if not self.full_size:
            pad = out.shape[1] // 2
            out = tf.pad(out, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return out

    def keyed_weights(self) -> list[tuple[str, object]]:
        pairs = [p for block in self.blocks for p in block.keyed_weights()]
        return pairs + _layer_weights(self.last_key, self.last)


def _scaled_tanh(bound: float):
    return lambda x: bound * tf.tanh(x)


class Generator(keras.Model):
    """Normalised amplitudes (B, C, N, N) -> (amplitude, phase) of the patches (B, C, N, N)."""

    def __init__(
        self,
        N: int,
        channels: int,
        n_filters_scale: int = 2,
        amp_activation: str = "sigmoid",
        full_size: bool = True,
        normalization: str = "none",
        global_mixing: bool = False,
        phase_head: str = "phase",
    ) -> None:
        super().__init__()
        filters = encoder_filters(N, n_filters_scale)
        self.blocks = []
        c = channels
        for i, f in enumerate(filters):
            self.blocks.append(ConvBlock(c, f, normalization, f"generator.encoder.{2 * i}"))
            c = f
        self.pool = keras.layers.MaxPooling2D(2)
        self.mixing = (
            SpatialMixing(N // 2 ** len(filters), f"generator.encoder.{2 * len(filters)}")
            if global_mixing
            else None
        )
        self.amplitude = Decoder(
            filters,
            channels,
            _AMPLITUDE_ACTIVATIONS[amp_activation],
            full_size,
            normalization,
            "generator.amplitude",
        )
        # The phase head starts flat (zero last convolution), as in the PyTorch generator;
        # the gradient head predicts the C x-gradients, then the C y-gradients (up to pi/2).
        gradient = phase_head == "gradient"
        self.phase = Decoder(
            filters,
            2 * channels if gradient else channels,
            _scaled_tanh(math.pi / 2 if gradient else math.pi),
            full_size,
            normalization,
            "generator.phase",
            zero_last=True,
        )
        self.N, self.channels = N, channels
        self(tf.zeros([1, channels, N, N]))  # creates every weight now

    def call(self, x, training=False):
        z = tf.transpose(x, [0, 2, 3, 1])
        for block in self.blocks:
            z = self.pool(block(z, training=training))
        if self.mixing is not None:
            z = self.mixing(z)
        amplitude = self.amplitude(z, training=training)
        phase = self.phase(z, training=training)
        return tf.transpose(amplitude, [0, 3, 1, 2]), tf.transpose(phase, [0, 3, 1, 2])

    def keyed_weights(self) -> list[tuple[str, object]]:
        """Every weight with its PyTorch ``state_dict`` key, in a fixed order."""
        pairs = [p for block in self.blocks for p in block.keyed_weights()]
        if self.mixing is not None:
            pairs += self.mixing.keyed_weights()
        return pairs + self.amplitude.keyed_weights() + self.phase.keyed_weights()
