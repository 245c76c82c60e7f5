"""One entry point for every refinement method, used by the CLI, the API and the benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ConfigError
from ptychopinn.model.pinn import PtychoPINN

from .finetune import FinetuneSettings, finetune_model
from .object import ObjectRefineSettings, refine_object
from .spec import RefineSpec

#: on_epoch(epoch, get_object, seconds): called after each epoch; ``seconds`` counts the
#: refinement only (not the callback, not the network's first pass).
EpochCallback = Callable[[int, Callable[[], np.ndarray], float], None]


@dataclass
class Refined:
    """A refined object with what produced it."""

    object: np.ndarray  # (H, W) complex64 on the scan's canvas
    method: str
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    probe: np.ndarray | None = None
    stopped: bool = False


def refine_reconstruction(
    model: PtychoPINN,
    data: PtychoData,
    start_object: np.ndarray,
    spec: RefineSpec,
    *,
    device: str | torch.device = "cpu",
    object_settings: ObjectRefineSettings | None = None,
    finetune_settings: FinetuneSettings | None = None,
    lsqml_settings=None,
    progress: bool = False,
    on_epoch: EpochCallback | None = None,
    probe: np.ndarray | None = None,
) -> Refined:
    """Refine the network's reconstruction ``start_object`` of ``data`` with ``spec``.

    ``probe``: the illumination in counts that ``object`` and ``lsqml`` refine with (the
    scan's own, :func:`ptychopinn.refine.scan_probe.refinement_probe`); None: the model's.
    """
    if probe is None:
        probe = model.counts_probe().cpu().numpy()
    if spec.method == "object":
        settings = replace(object_settings or ObjectRefineSettings(), epochs=spec.epochs)
        res = refine_object(
            start_object,
            probe,
            data.diffraction,
            data.coords,
            settings,
            device=device,
            progress=progress,
            on_epoch=on_epoch,
        )
        return Refined(
            res.object, "object", res.epochs_done, res.seconds, res.losses, res.probe, res.stopped
        )
    if spec.method == "finetune":
        return _finetune(model, data, spec, finetune_settings, device, progress, on_epoch)
    if spec.method == "lsqml":
        return _lsqml(data, start_object, spec, lsqml_settings, device, probe)
    raise ConfigError(f"refine: unknown method {spec.method!r}")


def _finetune(model, data, spec, settings, device, progress, on_epoch) -> Refined:
    from ptychopinn.workflows.infer import reconstruct

    def stitched(tuned: PtychoPINN) -> np.ndarray:
        return reconstruct(tuned, data, device=device).object

    callback = None
    if on_epoch is not None:

        def callback(epoch: int, tuned: PtychoPINN, seconds: float) -> None:
            start = time.perf_counter()
            obj = stitched(tuned)  # the forward pass belongs to the method's time
            on_epoch(epoch, lambda: obj, seconds + time.perf_counter() - start)

    settings = replace(settings or FinetuneSettings(), epochs=spec.epochs)
    tuned, losses, seconds, stopped = finetune_model(
        model, data, settings, device=device, progress=progress, on_epoch=callback
    )
    start = time.perf_counter()
    obj = stitched(tuned)
    seconds += time.perf_counter() - start
    return Refined(obj, "finetune", len(losses), seconds, losses, None, stopped)


def _lsqml(data, start_object, spec, settings, device, probe: np.ndarray) -> Refined:
    from ptychopinn.benchmarking.lsqml import LSQMLSettings, run_lsqml

    settings = replace(
        settings or LSQMLSettings(device="cpu" if torch.device(device).type == "cpu" else "auto"),
        epochs=spec.epochs,
    )
    start_data = replace(data, probe=probe)
    res = run_lsqml(start_data, settings, initial_object=start_object)
    return Refined(res.object, "lsqml", res.epochs, res.solve_s, [], res.probe, False)
