"""The PtychoPINN generator: a U-shaped CNN without skip connections.

Diffraction amplitudes of a group of ``C = gridsize**2`` neighbouring scan positions enter as
``C`` input channels; two decoders produce the amplitude and the phase of the ``C`` object
patches. Filter counts follow the published network: for ``N = 64`` the encoder has
``32·s, 64·s, 128·s`` filters (``s = n_filters_scale``), one pooling level per block, and the
bottleneck is always ``N/8`` pixels wide.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

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


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions with ReLU, size-preserving."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class Decoder(nn.Module):
    """Upsampling path from the bottleneck to ``N/2``, plus an optional full-size last stage.

    ``full_size=True`` (``probe_big``) predicts the whole N×N patch; otherwise the central
    N/2×N/2 region is predicted and zero-padded to N (``pad_object`` without ``probe_big``).
    """

    def __init__(
        self, filters: list[int], c_out: int, activation: nn.Module, full_size: bool
    ) -> None:
        super().__init__()
        ups = []
        c = filters[-1]
        for f in reversed(filters[:-1]):
            ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), ConvBlock(c, f)))
            c = f
        self.up = nn.Sequential(*ups)
        self.full_size = full_size
        if full_size:
            self.last = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c_out, 3, padding=1)
            )
        else:
            self.last = nn.Conv2d(c, c_out, 3, padding=1)
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
    ) -> None:
        super().__init__()
        filters = encoder_filters(N, n_filters_scale)
        blocks: list[nn.Module] = []
        c = channels
        for f in filters:
            blocks += [ConvBlock(c, f), nn.MaxPool2d(2)]
            c = f
        self.encoder = nn.Sequential(*blocks)
        amp_act = _AMPLITUDE_ACTIVATIONS[amp_activation]()
        self.amplitude = Decoder(filters, channels, amp_act, full_size)
        self.phase = Decoder(filters, channels, _Scaled(nn.Tanh(), math.pi), full_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(amplitude, phase)``, each (B, C, N, N)."""
        z = self.encoder(x)
        return self.amplitude(z), self.phase(z)

    @staticmethod
    def to_complex(amplitude: Tensor, phase: Tensor) -> Tensor:
        return torch.polar(amplitude.float(), phase.float())
