"""The physics-informed model: generator + overlap constraint + probe + far-field forward model.

Units. The network sees amplitudes multiplied by the intensity scale ``s`` (so that the
inputs have a fixed mean energy whatever the photon count) and the probe normalised to
``||P|| = N/2``. The predicted diffraction amplitude in the measured (sqrt-count) units is
``|F(P · O)| / s``; ``s`` is initialised from the data so that an object of amplitude 0.5
explains the mean measured intensity, and may be trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ptychopinn.config import ModelConfig
from ptychopinn.data.types import evenly_spaced_index
from ptychopinn.model.network import Generator
from ptychopinn.physics.forward import circular_mask, far_field, gaussian_blur, illuminate
from ptychopinn.physics.integrate import integrate_gradient, object_from_gradients
from ptychopinn.physics.patches import group_canvas_to_patches, patches_to_group_canvas

#: Object amplitude that the initial intensity scale assumes; mid-range of a sigmoid.
REFERENCE_AMPLITUDE = 0.5
#: Smallest weight of a patch pixel in the shared group canvas (relative to the probe peak).
OVERLAP_WEIGHT_FLOOR = 1e-3
#: Gaussian blur (px) of the illumination that weights a group's patches. The weighted patches
#: are Fourier-shifted to sub-pixel offsets; a hard-edged probe's ``|P|^2`` (a focused disk)
#: rings there (Gibbs), so an object merged with itself came back wrong by 0.7 on average in
#: the lit region and the network learned rings around every position. Blurred by one pixel
#: the error is 0.001; a smooth (defocused) probe's weights barely change.
OVERLAP_WEIGHT_BLUR = 1.0


def normalise_probe(probe: np.ndarray | Tensor, N: int) -> Tensor:
    """Complex64 probe scaled to ``||P||_2 = N/2`` (the network's fixed illumination energy)."""
    # Float64 and scaled by its peak first: a probe of any overall scale (1e-30, 1e30)
    # normalises, where a float32 sum of squares would underflow or overflow.
    p = torch.as_tensor(np.asarray(probe)).to(torch.complex128)
    peak = p.abs().max() if p.numel() else torch.zeros((), dtype=torch.float64)
    if not torch.isfinite(peak) or peak <= 0:
        raise ValueError("probe has zero or non-finite energy")
    p = p / peak
    return (p * (N / 2) / torch.linalg.vector_norm(p)).to(torch.complex64)


def mean_pattern_energy(amplitudes, max_patterns: int | None = 4096) -> float:
    """Mean total count per pattern, ``mean_k sum |X_k|^2``, from at most ``max_patterns``
    evenly spaced patterns (all with None), so a memory-mapped scan is not read whole."""
    index = evenly_spaced_index(amplitudes.shape[0], max_patterns)
    sample = np.asarray(amplitudes[index], dtype=np.float64)
    return float(np.mean(np.sum(np.square(sample), axis=(-2, -1))))


def initial_intensity_scale(
    amplitudes: np.ndarray, probe_normalised: Tensor, *, mean_energy: float | None = None
) -> float:
    """Scale ``s`` with ``mean_k sum |X_k s|^2 = ||P||^2 · REFERENCE_AMPLITUDE^2``.

    ``mean_energy`` (mean total count per pattern) replaces the one of ``amplitudes`` (when
    training on several scans).
    """
    if mean_energy is None:
        mean_energy = mean_pattern_energy(amplitudes, max_patterns=None)
    if not math.isfinite(mean_energy) or mean_energy <= 0:
        raise ValueError("diffraction data carry no signal (mean total intensity is zero)")
    probe_energy = float(torch.sum(probe_normalised.abs() ** 2))
    return math.sqrt(probe_energy * REFERENCE_AMPLITUDE**2 / mean_energy)


@dataclass
class ForwardOutput:
    """What one forward pass produces for a batch of groups."""

    object_patches: Tensor  # (B, C, N, N) complex, after the overlap constraint
    amplitude: Tensor  # (B, C, N, N) predicted diffraction amplitude in sqrt-count units


class PtychoPINN(nn.Module):
    """Generator plus differentiable physics: measured amplitudes in, predictions out."""

    def __init__(
        self,
        config: ModelConfig,
        probe: np.ndarray | Tensor,
        intensity_scale: float,
        *,
        probe_trainable: bool = False,
        intensity_scale_trainable: bool = True,
        reference_energy: float | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        #: Mean total count per pattern of the training data (None: unknown, older archives).
        #: Inference rescales a scan of another dose to it (``workflows.infer.dose_factor``).
        self.reference_energy = reference_energy
        N = config.N
        channels = config.network_channels
        full_size = config.probe_big or not config.pad_object
        self.generator = Generator(
            N,
            channels,
            config.n_filters_scale,
            config.amp_activation,
            full_size=full_size,
            normalization=config.normalization,
            global_mixing=config.global_mixing,
            phase_head=config.phase_head,
        )
        probe_t = normalise_probe(probe, N)
        if probe_t.shape != (N, N):
            raise ValueError(f"probe must be ({N}, {N}), found {tuple(probe_t.shape)}")
        # Stored as a real (2, N, N) view so every optimiser and DDP backend handles it.
        probe_ri = torch.view_as_real(probe_t).permute(2, 0, 1).contiguous()
        if probe_trainable:
            self.probe_ri = nn.Parameter(probe_ri)
        else:
            self.register_buffer("probe_ri", probe_ri)
        log_scale = torch.tensor(math.log(intensity_scale), dtype=torch.float32)
        if intensity_scale_trainable:
            self.log_intensity_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_intensity_scale", log_scale)
        mask = circular_mask(N) if config.probe_mask else None
        self.register_buffer("probe_mask", mask, persistent=False)

    @property
    def probe(self) -> Tensor:
        """The normalised complex probe (N, N)."""
        return torch.complex(self.probe_ri[0], self.probe_ri[1])

    @property
    def intensity_scale(self) -> Tensor:
        return self.log_intensity_scale.exp()

    def predict_patches(
        self, amplitudes: Tensor, offsets: Tensor | None = None, probe: Tensor | None = None
    ) -> Tensor:
        """Object patches (B, C, N, N) for measured amplitudes (B, C, N, N) in sqrt-count units.

        With ``object_big`` and C > 1 the patches of a group are merged into one shared canvas
        at their relative ``offsets`` (B, C, 2) and cut out again: the overlap constraint.
        ``probe`` (B, N, N), normalised like :func:`normalise_probe`, is each group's own
        illumination (training on several scans); None means the model's probe.
        """
        amp, phase = self.predict_fields(amplitudes)
        merge = self.config.object_big and amp.shape[1] > 1 and offsets is not None
        if self.config.phase_head == "gradient":
            if merge:
                return self.merge_gradient_patches(amp, phase, offsets, probe)
            return Generator.to_complex(amp, integrate_gradient(phase[:, :, 0], phase[:, :, 1]))
        patches = Generator.to_complex(amp, phase)
        if merge:
            patches = self.apply_overlap_constraint(patches, offsets, probe)
        return patches

    def predict_fields(self, amplitudes: Tensor) -> tuple[Tensor, Tensor]:
        """The network's raw output for amplitudes (B, C, N, N): object amplitude (B, C, N, N)
        and phase (B, C, N, N), or with the gradient head its x/y gradients (B, C, 2, N, N)."""
        x = amplitudes * self.intensity_scale
        B, C = x.shape[:2]
        if self.config.per_pattern_network:
            amp, phase = self.generator(x.reshape(B * C, 1, *x.shape[2:]))
        else:
            amp, phase = self.generator(x)
        amp = amp.reshape(B, C, *amp.shape[2:])
        if self.config.phase_head == "gradient":
            if self.config.per_pattern_network:
                return amp, phase.reshape(B, C, 2, *phase.shape[2:])
            return amp, phase.reshape(B, 2, C, *phase.shape[2:]).transpose(1, 2)
        return amp, phase.reshape(B, C, *phase.shape[2:])

    def _probe_for(self, probe: Tensor | None) -> Tensor:
        """The model's probe (N, N), or per-group probes (B, N, N) as (B, 1, N, N)."""
        return self.probe if probe is None else probe.unsqueeze(1)

    def overlap_weights(self, probe: Tensor | None = None) -> Tensor:
        """Per-pixel confidence of a patch: its illumination ``|P|^2`` (max 1), blurred by
        :data:`OVERLAP_WEIGHT_BLUR` px and floored.

        A single pattern says nothing about the object where the probe is dark, so each patch
        contributes to the shared canvas in proportion to how strongly it was lit there.
        """
        intensity = self._probe_for(probe).detach().abs() ** 2
        # In float64 (Apple GPUs have none): the same weights, to round-off, whether one
        # probe or one per group.
        wide = torch.float32 if intensity.device.type == "mps" else torch.float64
        blurred = gaussian_blur(intensity.to(wide), OVERLAP_WEIGHT_BLUR)
        peak = blurred.amax(dim=(-2, -1), keepdim=True)
        return (blurred / peak + OVERLAP_WEIGHT_FLOOR).to(intensity.dtype)

    def average_on_group_canvas(
        self, values: list[Tensor], offsets: Tensor, probe: Tensor | None = None
    ) -> list[Tensor]:
        """Each of ``values`` (B, C, N, N) averaged over its group on one shared canvas
        (B, S, S), every patch weighted by its illumination (:meth:`overlap_weights`)."""
        N = values[0].shape[-1]
        extent = int(math.ceil(float(offsets.abs().max()))) if offsets.numel() else 0
        canvas_size = N + 2 * extent
        weights = self.overlap_weights(probe).to(values[0].dtype).expand_as(values[0])
        cover = patches_to_group_canvas(weights, offsets, canvas_size).real
        cover = cover.clamp_min(OVERLAP_WEIGHT_FLOOR)
        return [
            patches_to_group_canvas(v * weights.to(v.dtype), offsets, canvas_size) / cover
            for v in values
        ]

    def apply_overlap_constraint(
        self, patches: Tensor, offsets: Tensor, probe: Tensor | None = None
    ) -> Tensor:
        """Merge the C patches of each group into one canvas (illumination-weighted) and
        cut them out again, so overlapping patches must agree on one object."""
        (canvas,) = self.average_on_group_canvas([patches], offsets, probe)
        return group_canvas_to_patches(canvas, offsets, patches.shape[-1])

    def merge_gradient_patches(
        self, amp: Tensor, gradients: Tensor, offsets: Tensor, probe: Tensor | None = None
    ) -> Tensor:
        """The overlap constraint of the gradient head: amplitudes (B, C, N, N) and phase
        gradients (B, C, 2, N, N) of a group merged on one canvas (illumination-weighted),
        the gradients integrated there, and the complex patches cut out again."""
        grad = torch.complex(gradients[:, :, 0].float(), gradients[:, :, 1].float())
        amplitude, grad = self.average_on_group_canvas(
            [amp.float().to(torch.complex64), grad], offsets, probe
        )
        canvas = object_from_gradients(amplitude, grad)
        return group_canvas_to_patches(canvas, offsets, amp.shape[-1])

    def diffraction_amplitude(self, patches: Tensor, probe: Tensor | None = None) -> Tensor:
        """Predicted amplitude in sqrt-count units for object patches (B, C, N, N), lit by
        the model's probe or by per-group probes (B, N, N)."""
        exit_wave = illuminate(
            patches,
            self._probe_for(probe),
            probe_mask=self.probe_mask,
            smoothing_sigma=self.config.gaussian_smoothing_sigma,
        )
        return far_field(exit_wave).abs() / self.intensity_scale

    def counts_probe(self, probe: np.ndarray | Tensor | None = None) -> Tensor:
        """The illumination as the physics applies it (smoothing and mask included), in units
        where ``|F(P · O)|`` is the measured amplitude: what an iterative refinement of the
        network's object starts from. ``probe`` (N, N): another illumination (a scan's own),
        normalised as the model's was, in place of the model's."""
        with torch.no_grad():
            source = self.probe
            if probe is not None:
                source = normalise_probe(probe, self.config.N).to(source.device)
            lit = illuminate(
                torch.ones_like(source),
                source,
                probe_mask=self.probe_mask,
                smoothing_sigma=self.config.gaussian_smoothing_sigma,
            )
            return lit / self.intensity_scale

    def forward(
        self, amplitudes: Tensor, offsets: Tensor | None = None, probe: Tensor | None = None
    ) -> ForwardOutput:
        patches = self.predict_patches(amplitudes, offsets, probe)
        return ForwardOutput(patches, self.diffraction_amplitude(patches, probe))
