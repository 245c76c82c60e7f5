"""Inference: predict a patch for every scan position and stitch them into the object.

Speed (CPU, see ``benchmarks/inference_speed.py``): the network is compute-bound (about
2 GFLOP per 64x64 pattern with ``n_filters_scale=2``), so what helps is what makes its
convolutions faster. It runs in ``channels_last`` memory format (oneDNN's native layout,
about 1.5-2x on CPU), under ``torch.inference_mode``. Patterns are gathered batch by batch
from the (possibly memory-mapped) input, and predicted patches are stitched in chunks of at
least ``stitch_batch_size`` (fewer, larger tensor operations), so memory stays bounded by a
batch plus the canvas, whatever the number of scan positions.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ptychopinn.config import ExecutionConfig
from ptychopinn.data.grouping import group_all_positions
from ptychopinn.data.npz import MAX_CANVAS_PIXELS
from ptychopinn.data.types import PtychoData, evenly_spaced_index, require_scan
from ptychopinn.errors import ConfigError, DataValidationError
from ptychopinn.model import scan_statistics
from ptychopinn.model.pinn import PtychoPINN, mean_pattern_energy
from ptychopinn.physics.integrate import object_from_gradients
from ptychopinn.physics.patches import PatchAccumulator
from ptychopinn.progress import Progress
from ptychopinn.tf_backend import model_backend

log = logging.getLogger(__name__)
#: Dose ratio (scan / training, either way) beyond which inference warns.
DOSE_WARN_RATIO = 10.0
#: Patches stitched per accumulator call (at least one network batch).
STITCH_BATCH_SIZE = 256
WEIGHTINGS = ("probe", "uniform", "none")
_AUTOCAST = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
#: ExecutionConfig's spellings of the same precisions ("bf16-mixed" -> "bf16", ...).
_AUTOCAST_ALIASES = {
    long: short for short, long in ExecutionConfig._VALUE_ALIASES["precision"].items()
}


@dataclass
class Reconstruction:
    """A stitched object with the positions it was stitched at."""

    object: np.ndarray  # (H, W) complex64
    weights: np.ndarray  # (H, W) float32 accumulated stitching weight
    xcoords: np.ndarray
    ycoords: np.ndarray
    patches: np.ndarray | None = None  # (M, N, N) complex64 when requested


def _has_other_layout(module: nn.Module) -> bool | None:
    """Whether any 4-D parameter is not plain contiguous (None: no 4-D parameter at all)."""
    convs = [p for p in module.parameters() if p.ndim == 4]
    if not convs:
        return None
    return any(not p.is_contiguous() for p in convs)


def _set_layout(module: nn.Module, memory_format: torch.memory_format) -> None:
    # Outside inference mode: parameters re-created inside it would become inference
    # tensors, and training the model afterwards would fail.
    with torch.inference_mode(False), torch.no_grad():
        module.to(memory_format=memory_format)


@contextlib.contextmanager
def channels_last(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Run ``module`` in channels-last memory format, restoring its layout afterwards.

    Converting the weights costs a copy of the (small) parameters; the caller's model is left
    as it was found (a model already in a non-default layout is not touched), so training
    can continue on it. Not for a model that another thread uses at the same time.
    """
    if not enabled or _has_other_layout(module) is not False:
        yield
        return
    _set_layout(module, torch.channels_last)
    try:
        yield
    finally:
        _set_layout(module, torch.contiguous_format)


def _autocast(device: torch.device, precision: str):
    precision = _AUTOCAST_ALIASES.get(precision, precision)
    if precision not in _AUTOCAST:
        raise ConfigError(f"precision: expected one of {sorted(_AUTOCAST)}, found {precision!r}")
    dtype = _AUTOCAST[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _checked_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device, or one message when torch cannot run there."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(
            f"device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', found {device!r}"
        ) from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {str(device)!r} asked, but torch sees no CUDA GPU here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' asked, but torch sees no Apple GPU here")
    return device


def _checked_canvas(canvas_shape: tuple[int, int], N: int) -> tuple[int, int]:
    """A canvas of two whole sizes, each at least one patch, at most MAX_CANVAS_PIXELS."""
    try:
        h, w = (int(v) for v in canvas_shape)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"canvas_shape: expected (height, width), found {canvas_shape!r}") from e
    if min(h, w) < N or h * w > MAX_CANVAS_PIXELS:
        raise ConfigError(
            f"canvas_shape: expected each size >= N = {N} and at most {MAX_CANVAS_PIXELS} "
            f"pixels in all, found {h} x {w}"
        )
    return h, w


def _gather(diffraction, idx: np.ndarray) -> torch.Tensor:
    """Float32 amplitudes (B, C, N, N) of the positions ``idx`` (B, C).

    Indexing per batch reads only those patterns, so a memory-mapped input is never copied
    whole. A sorted unique read keeps memory-mapped access sequential.
    """
    flat = idx.reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    block = np.asarray(diffraction[unique], dtype=np.float32)
    batch = block[inverse].reshape(*idx.shape, *block.shape[-2:])
    return torch.from_numpy(batch)


def _stitch_weights(model: PtychoPINN, weighting: str) -> torch.Tensor | None:
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting: expected one of {WEIGHTINGS}, found {weighting!r}")
    if weighting == "probe":
        if model_backend(model) == "tensorflow":
            return torch.from_numpy(np.abs(model.probe_array()) ** 2).float()
        return (model.probe.detach().abs() ** 2).float()
    return None


def _tensorflow_predictor(model) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """Patches (B, C, N, N) from a TensorFlow model, as a CPU torch tensor (the network runs
    on TensorFlow's own device; one compiled graph per batch shape). With the gradient head:
    the packed ``[amplitude, gx + i gy]`` of :func:`_gradient_predictor`."""
    from ptychopinn.tf_backend.infer import field_predictor, patch_predictor

    if model.config.phase_head == "gradient":
        fields = field_predictor(model)
        return lambda x, offsets: torch.from_numpy(fields(x.cpu().numpy()))
    predict = patch_predictor(model)

    def run(x: torch.Tensor, offsets: torch.Tensor | None) -> torch.Tensor:
        off = None if offsets is None else offsets.cpu().numpy()
        return torch.from_numpy(predict(x.cpu().numpy(), off))

    return run


class _PatchStitcher:
    """Stitches complex patches (M, N, N) into the object: one weighted average."""

    def __init__(self, canvas_shape, N: int, device, weights) -> None:
        self.acc = PatchAccumulator(canvas_shape, N, device=device)
        self.weights = weights

    def add(self, patches: torch.Tensor, centres: torch.Tensor) -> None:
        self.acc.add(patches, centres, self.weights)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.acc.result()

    @staticmethod
    def patches(output: torch.Tensor) -> torch.Tensor:
        return output


class _GradientStitcher(_PatchStitcher):
    """For the gradient head: predictions packed (M, 2, N, N) as ``[amplitude, gx + i gy]``.
    Amplitudes and phase gradients are averaged on the object canvas and the gradients
    integrated there once, so phase plateaus wider than the probe get their level from the
    edges the scan crosses (see :mod:`ptychopinn.physics.integrate`)."""

    def __init__(self, canvas_shape, N: int, device, weights) -> None:
        super().__init__(canvas_shape, N, device, weights)
        self.gradients = PatchAccumulator(canvas_shape, N, device=device)

    def add(self, packed: torch.Tensor, centres: torch.Tensor) -> None:
        self.acc.add(packed[:, 0], centres, self.weights)
        self.gradients.add(packed[:, 1], centres, self.weights)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        amplitude, weight_sum = self.acc.result()
        gradient, _ = self.gradients.result()
        return object_from_gradients(amplitude, gradient), weight_sum

    @staticmethod
    def patches(output: torch.Tensor) -> torch.Tensor:
        """Each patch on its own (its gradients integrated over the patch alone)."""
        return object_from_gradients(output[:, 0], output[:, 1])


def inference_gridsize(model) -> int:
    """The group side used at inference. A per-pattern network reads each pattern alone, so
    it makes one pass per pattern (groups of one); merging each position's group of C
    predictions first would cost C passes per pattern for the same stitched information
    (docs/quality.md, "Why one pass per pattern"). A grouped network reads its C patterns
    together."""
    return 1 if model.config.per_pattern_network else model.config.gridsize


def _gradient_predictor(
    model: PtychoPINN,
) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The anchor pattern's amplitude and phase gradients, packed (B, 1, 2, N, N)."""

    def run(x: torch.Tensor, offsets: torch.Tensor | None) -> torch.Tensor:
        amp, grad = model.predict_fields(x)
        amp, grad = amp[:, :1].float(), grad[:, :1].float()
        gradients = torch.complex(grad[:, :, 0], grad[:, :, 1])
        return torch.stack([amp.to(torch.complex64), gradients], dim=2)

    return run


def dose_factor(model: PtychoPINN, data: PtychoData) -> float:
    """Input factor that brings ``data`` to the model's training dose (1 when unknown).

    The object does not depend on the dose, only the measured amplitudes do (as its square
    root), so a scan taken at ``k`` times the training dose is fed to the network as
    ``X / sqrt(k)``: the input normalisation follows the scan, not the training set.
    """
    if not model.reference_energy:
        return 1.0
    energy = mean_pattern_energy(data.diffraction)
    if not energy > 0:
        return 1.0
    ratio = energy / model.reference_energy
    if not DOSE_WARN_RATIO**-1 <= ratio <= DOSE_WARN_RATIO:
        log.warning(
            "%s: %.3g counts per pattern on average, %.3gx the training data's %.3g; the "
            "network input is rescaled to the training dose, but its noise level is not what "
            "the model saw: check the result (or refine it: --refine object)",
            data.source,
            energy,
            ratio,
            model.reference_energy,
        )
    elif abs(math.log(ratio)) > 0.01:
        log.info("%s: dose %.3gx the training data's; inputs rescaled", data.source, ratio)
    return 1.0 / math.sqrt(ratio)


@torch.inference_mode()
def reconstruct(
    model: PtychoPINN,
    data: PtychoData,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    weighting: str = "probe",
    return_patches: bool = False,
    canvas_shape: tuple[int, int] | None = None,
    progress: bool = False,
    channels_last_format: bool = True,
    precision: str = "32",
    stitch_batch_size: int = STITCH_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    adapt_dose: bool = True,
    adapt_batch_norm: bool = False,
) -> Reconstruction:
    """Predict one patch per scan position and stitch all of them on the object canvas.

    Every position is the anchor of its own group, so the whole scan is reconstructed: a
    grouped network's nearest neighbours complete the group when ``gridsize > 1``; a
    per-pattern network reads each pattern alone (:func:`inference_gridsize`). Patches are
    streamed into the canvas chunk by chunk; memory is bounded by a chunk and the canvas, not
    the scan (unless ``return_patches``). ``weighting='probe'`` weights each patch by
    ``|P|^2`` (the object is known where it is lit); ``'uniform'``/``'none'`` weight all
    pixels alike. A model with the gradient phase head has its amplitudes and phase gradients
    stitched and the gradients integrated once over the whole canvas (``patches`` then hold
    each patch integrated alone).

    ``adapt_dose`` feeds a scan measured at another dose than the training data rescaled
    to the training dose (:meth:`PtychoPINN.dose_factor`), with a warning when the two differ
    by more than :data:`DOSE_WARN_RATIO`. ``data.diffraction`` may be any array indexable by
    an integer array (a ``np.memmap`` included). ``adapt_batch_norm`` (opt-in) predicts with
    the batch-norm statistics of the scan itself (:mod:`ptychopinn.model.scan_statistics`)
    when it has at least :data:`~ptychopinn.model.scan_statistics.MIN_PATTERNS` positions.
    ``precision`` ``'bf16'``/``'16'`` runs the network under autocast (useful on GPUs; slow
    on CPUs without native bf16).
    ``on_batch(n_done)`` is called after each batch.
    """
    from ptychopinn.bundle import LoadedModel

    require_scan(data, "data")
    if isinstance(model, LoadedModel):  # what load_model returns, given whole
        model = model.model
    if not hasattr(model, "config"):
        raise ConfigError(
            f"model: expected a trained model (ptychopinn.bundle.load_model(path).model or "
            f"a training result's module.model), found {type(model).__name__}"
        )
    N = model.config.N
    if data.N != N:
        raise DataValidationError(
            f"{data.source}: patterns are {data.N}x{data.N} but the model was trained for N={N}"
        )
    if batch_size < 1 or stitch_batch_size < 1:
        raise ConfigError(
            f"batch_size, stitch_batch_size: expected >= 1, found {batch_size}, {stitch_batch_size}"
        )
    device = _checked_device(device)
    tensorflow = model_backend(model) == "tensorflow"
    if tensorflow:
        if _AUTOCAST_ALIASES.get(precision, precision) != "32":
            raise ConfigError(
                f"precision: the tensorflow backend reconstructs in float32 ('32'), "
                f"found {precision!r}"
            )
        predict = _tensorflow_predictor(model)
        channels_last_format = False  # a torch memory layout; TensorFlow runs NHWC anyway
    else:
        model = model.to(device).eval()
    gradient_head = model.config.phase_head == "gradient"
    if not tensorflow:
        predict = _gradient_predictor(model) if gradient_head else model.predict_patches
    weights = _stitch_weights(model, weighting)
    dose = dose_factor(model, data) if adapt_dose else 1.0
    autocast = _autocast(device, precision)
    groups = group_all_positions(data.coords, inference_gridsize(model))
    stitcher_class = _GradientStitcher if gradient_head else _PatchStitcher
    canvas = data.canvas_shape() if canvas_shape is None else _checked_canvas(canvas_shape, N)
    acc = stitcher_class(canvas, N, device, weights)
    offsets = torch.from_numpy(groups.offsets.astype(np.float32))
    anchors = torch.from_numpy(data.coords[groups.indices[:, 0]])
    use_offsets = groups.C > 1
    chunk = max(stitch_batch_size, batch_size)
    pending: list[torch.Tensor] = []
    pending_from = 0
    kept: list[torch.Tensor] | None = [] if return_patches else None

    def flush(stop: int) -> None:
        nonlocal pending_from
        if not pending:
            return
        patches = torch.cat(pending) if len(pending) > 1 else pending[0]
        acc.add(patches, anchors[pending_from:stop].to(device))
        pending.clear()
        pending_from = stop

    def network_input(rows: slice | np.ndarray, to: torch.device) -> torch.Tensor:
        """The groups ``rows`` of the scan as the network reads them: at the training dose,
        in the network's memory layout."""
        x = _gather(data.diffraction, groups.indices[rows]).to(to, non_blocking=True)
        if dose != 1.0:
            x = x * dose
        if channels_last_format:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    sample_device = torch.device("cpu") if tensorflow else device  # the twin's, for TF

    def run_sample(network: PtychoPINN) -> None:
        """The network's fields for a sample of the scan (their batch statistics matter)."""
        sample = torch.from_numpy(evenly_spaced_index(groups.G, scan_statistics.MAX_PATTERNS))
        for idx in scan_statistics.sample_batches(sample, batch_size):
            with autocast:
                network.predict_fields(network_input(idx.numpy(), sample_device))

    scan_norm = contextlib.nullcontext(False)
    if adapt_batch_norm and groups.G >= scan_statistics.MIN_PATTERNS:
        if tensorflow:
            from ptychopinn.tf_backend.infer import statistics_from

            scan_norm = statistics_from(model, run_sample)
        else:
            scan_norm = scan_statistics.statistics_from(model.generator, lambda: run_sample(model))
    starts = range(0, groups.G, batch_size)
    with channels_last(model.generator, channels_last_format), scan_norm as adapted:
        if adapted:
            log.debug("%s: batch-norm statistics of the scan itself", data.source)
        for start in Progress(starts, desc="reconstructing", unit="batch", enabled=progress):
            stop = min(start + batch_size, groups.G)
            x = network_input(slice(start, stop), device)
            off = offsets[start:stop].to(device) if use_offsets else None
            with autocast:
                patches = predict(x, off)[:, 0].to(device)
            patches = patches.to(torch.complex64).contiguous()
            pending.append(patches)
            if kept is not None:
                kept.append(acc.patches(patches).cpu())
            if stop - pending_from >= chunk:
                flush(stop)
            if on_batch is not None:
                on_batch(stop)
        flush(groups.G)
    canvas, weight_sum = acc.result()
    return Reconstruction(
        object=canvas.cpu().numpy().astype(np.complex64),
        weights=weight_sum.cpu().numpy().astype(np.float32),
        xcoords=np.array(data.xcoords, dtype=np.float64),
        ycoords=np.array(data.ycoords, dtype=np.float64),
        patches=None if kept is None else torch.cat(kept).numpy(),
    )
