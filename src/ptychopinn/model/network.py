"""The PtychoPINN generator: a U-shaped CNN without skip connections.

Diffraction amplitudes of a group of ``C = gridsize**2`` neighbouring scan positions enter as
``C`` input channels; two decoders produce the amplitude and the phase of the ``C`` object
patches (or, with ``phase_head='gradient'``, the phase's x and y gradients). Filter counts
follow the published network: for ``N = 64`` the encoder has ``32·s, 64·s, 128·s`` filters
(``s = n_filters_scale``), one pooling level per block, and the bottleneck is always ``N/8``
pixels wide.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ptychopinn.config import ModelConfig

_AMPLITUDE_ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "relu": nn.ReLU,
}


def encoder_filters(N: int, n_filters_scale: int) -> list[int]:
    """Filters per encoder block: the last is ``128·s`` and each earlier one halves it."""
    levels = int(math.log2(N)) - 3
    if levels < 1 or 2 ** (levels + 3) != N:
        raise ValueError(f"N must be a power of two >= 16, found {N}")
    return [128 * n_filters_scale // 2 ** (levels - 1 - i) for i in range(levels)]


NORMALIZATIONS = ModelConfig.NORMALIZATIONS
PHASE_HEADS = ModelConfig.PHASE_HEADS


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions with ReLU (and optional normalisation), size-preserving."""

    def __init__(self, c_in: int, c_out: int, normalization: str = "none") -> None:
        bias = normalization == "none"  # a normalisation layer's shift replaces the bias
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias),
            _norm_layer(normalization, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
            _norm_layer(normalization, c_out),
            nn.ReLU(inplace=True),
        )


def subpixel_kernels(weight: Tensor) -> Tensor:
    """The 3×3 kernels that give a 3×3 convolution of a 2× nearest-upsampled map from the
    low-resolution map, one per output sub-pixel: ``(O, C, 3, 3)`` -> ``(4·O, C, 3, 3)``,
    ordered as :func:`torch.nn.functional.pixel_shuffle` expects.

    Along each axis an even output pixel ``2i`` reads upsampled pixels ``2i-1, 2i, 2i+1``, i.e.
    low-resolution pixels ``i-1, i, i``: taps ``(w0, w1 + w2, 0)`` at offsets ``-1, 0, +1``;
    an odd one ``2i+1`` reads ``i, i, i+1``: taps ``(0, w0 + w1, w2)``. Zero padding of the
    upsampled map is zero padding of the low-resolution one.
    """

    def fold(w: Tensor, dim: int, odd: bool) -> Tensor:
        w0, w1, w2 = w.unbind(dim)
        zero = torch.zeros_like(w0)
        return torch.stack((zero, w0 + w1, w2) if odd else (w0, w1 + w2, zero), dim)

    per_subpixel = [
        fold(fold(weight, 2, row_odd), 3, col_odd)
        for row_odd in (False, True)
        for col_odd in (False, True)
    ]
    out, c_in = weight.shape[:2]
    return torch.stack(per_subpixel, 1).reshape(4 * out, c_in, 3, 3)


class UpsampledConv(nn.Sequential):
    """2× nearest upsampling, then a 3×3 convolution (``padding=1``).

    Computed at the low resolution: one 3×3 convolution per output sub-pixel, from the same
    weights (:func:`subpixel_kernels`), then a pixel shuffle. The result is the same and so
    are the parameters (``1.weight``, ``1.bias``), but the upsampled map is never built and
    the convolution has 4× the output channels on a quarter of the pixels: the output layers'
    one-channel convolutions at full size ran several times slower on a CPU (oneDNN).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        # The Upsample is not called by forward: it keeps the weights at index 1 (the
        # published layer's archive keys) and spells out the layer forward() is equal to.
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        conv = self[1]
        bias = None if conv.bias is None else conv.bias.repeat_interleave(4)
        y = nn.functional.conv2d(x, subpixel_kernels(conv.weight), bias, padding=1)
        return nn.functional.pixel_shuffle(y, 2)


class SpatialMixing(nn.Module):
    """A learned linear map across all bottleneck positions, shared by the channels.

    Every object pixel depends on the whole diffraction pattern (the far field is a Fourier
    transform), but stacked 3×3 convolutions only see a neighbourhood. Mixing the
    ``(N/8)^2`` bottleneck positions gives each decoder pixel a global view for
    ``(N/8)^4`` weights. Residual, initialised at zero, so it starts as the identity.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.mix = nn.Linear(size * size, size * size)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, z: Tensor) -> Tensor:
        b, c, h, w = z.shape
        return z + torch.relu(self.mix(z.reshape(b, c, h * w))).reshape(b, c, h, w)


class Decoder(nn.Module):
    """Convolutions at the bottleneck's resolution, each block followed by 2x upsampling.

    Each block runs two 3×3 convolutions and then doubles the size (the published layout), so
    the decoder reaches ``N/2`` with the fewest operations. ``full_size=True``
    (``probe_big``) upsamples once more and predicts the whole N×N patch; otherwise the
    central N/2×N/2 region is predicted and zero-padded to N (``pad_object`` without
    ``probe_big``). Upsampling before the convolutions instead (4× the operations per block)
    trained 1.6× slower and scored lower in the quality benchmark.
    """

    def __init__(
        self,
        filters: list[int],
        c_out: int,
        activation: nn.Module,
        full_size: bool,
        normalization: str = "none",
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c = filters[-1]
        for f in reversed(filters[:-1]):
            blocks += [ConvBlock(c, f, normalization), nn.Upsample(scale_factor=2, mode="nearest")]
            c = f
        self.up = nn.Sequential(*blocks)
        self.full_size = full_size
        self.last = UpsampledConv(c, c_out) if full_size else nn.Conv2d(c, c_out, 3, padding=1)
        self.activation = activation

    def forward(self, z: Tensor) -> Tensor:
        out = self.activation(self.last(self.up(z)))
        if not self.full_size:
            pad = out.shape[-1] // 2
            out = nn.functional.pad(out, (pad, pad, pad, pad))
        return out


class _Scaled(nn.Module):
    def __init__(self, inner: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner = inner
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.inner(x)


class Generator(nn.Module):
    """Maps normalised amplitudes (B, C, N, N) to complex object patches (B, C, N, N)."""

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
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, found {normalization!r}"
            )
        filters = encoder_filters(N, n_filters_scale)
        blocks: list[nn.Module] = []
        c = channels
        for f in filters:
            blocks += [ConvBlock(c, f, normalization), nn.MaxPool2d(2)]
            c = f
        if global_mixing:
            blocks.append(SpatialMixing(N // 2 ** len(filters)))
        self.encoder = nn.Sequential(*blocks)
        amp_act = _AMPLITUDE_ACTIVATIONS[amp_activation]()
        self.amplitude = Decoder(filters, channels, amp_act, full_size, normalization)
        if phase_head not in PHASE_HEADS:
            raise ValueError(f"phase_head must be one of {PHASE_HEADS}, found {phase_head!r}")
        # gradient: two maps per patch, the phase's x and y forward differences (rad/px, up
        # to pi/2), integrated by the model; phase: the phase itself (up to pi).
        if phase_head == "gradient":
            phase_out, bound = 2 * channels, math.pi / 2
        else:
            phase_out, bound = channels, math.pi
        self.phase = Decoder(
            filters, phase_out, _Scaled(nn.Tanh(), bound), full_size, normalization
        )

        self._start_with_flat_phase()

    def _start_with_flat_phase(self) -> None:
        """Zero the phase head's last convolution: training starts from phase 0 everywhere.

        A constant phase offset leaves every diffraction pattern unchanged, so the data never
        pull the phase back from wherever the random start puts it. Started at random, the
        phase offset drifted towards the ±π bounds of ``π·tanh`` in most seeds, where the
        phase wraps and its SSIM collapses (3 of 4 seeds at N=32); started flat, it does not
        (unseen-object phase SSIM 0.10 -> 0.22 on average over those seeds).
        """
        last = (
            self.phase.last[-1] if isinstance(self.phase.last, nn.Sequential) else self.phase.last
        )
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(amplitude, phase)``, each (B, C, N, N); with the gradient head the second
        is (B, 2C, N, N): the C x-gradients, then the C y-gradients."""
        z = self.encoder(x)
        return self.amplitude(z), self.phase(z)

    @staticmethod
    def to_complex(amplitude: Tensor, phase: Tensor) -> Tensor:
        return torch.polar(amplitude.float(), phase.float())
