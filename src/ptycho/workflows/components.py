"""``ptycho.workflows.components``: train, load and save through the core workflows."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ptycho import model_manager, params
from ptycho.config.config import update_legacy_dict
from ptycho.model_manager import InferenceModel
from ptycho.raw_data import RawData
from ptychopinn.atomic import atomic_savez
from ptychopinn.bundle import intensity_scale_of, load_model
from ptychopinn.config import ExecutionConfig, TrainingConfig, from_dict, to_dict
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ArchiveError

logger = logging.getLogger(__name__)

__all__ = ["load_inference_bundle", "run_cdi_example", "save_outputs"]


def _default_device() -> str:
    from ptychopinn.workflows.execution import resolve_device

    return str(resolve_device("auto"))


def load_inference_bundle(
    model_dir: str | os.PathLike[str], *, device: str | None = None
) -> tuple[InferenceModel, dict[str, Any]]:
    """Load a trained model for inference: ``(model, params)``.

    ``model.predict([X * intensity_scale, local_offsets])`` gives object patches; the
    archive's configs and ``intensity_scale`` are written to ``ptycho.params.cfg`` (as the
    legacy loader did) and a copy of that dictionary is returned. ``device`` defaults to CUDA
    when available, else the CPU.
    """
    path = Path(model_dir)
    if not path.exists():
        raise ArchiveError(f"{path}: model bundle not found")
    device = device or _default_device()
    loaded = load_model(path, device=device)
    scale = float(loaded.model.intensity_scale.detach())
    update_legacy_dict(params.cfg, loaded.training_config)
    params.cfg["intensity_scale"] = scale
    logger.info(
        "loaded model (N=%d, gridsize=%d, intensity scale %.4g) on %s",
        loaded.model_config.N,
        loaded.model_config.gridsize,
        scale,
        device,
    )
    supervised = loaded.model_config.model_type == "supervised"
    return InferenceModel(loaded.model, supervised=supervised, device=device), dict(params.cfg)


def _as_data(data: RawData | PtychoData | None) -> PtychoData | None:
    return data.data if isinstance(data, RawData) else data


#: Side of the overlap groups a gridsize-1 (one pattern per pass) network trains on.
SINGLE_PATTERN_TRAINING_GRIDSIZE = 2


def resolve_training_config(config: TrainingConfig, data_n: int) -> TrainingConfig:
    """The validated core TrainingConfig that ``run_cdi_example`` trains.

    ``model.N = 0`` (unknown) becomes the data's ``data_n``. A gridsize-1 PINN (Ptychodus'
    ``PtychoPINN`` default) trains a network that still reads one pattern per pass, but on
    2x2 groups of neighbouring positions whose patches must agree on one object (the
    overlap constraint): without it the smooth phase is undetermined and training on the
    same settings scored 0.594 / 0.533 on an unseen object, against 0.729 / 0.604 with it
    (docs/ptychodus.md). Such a model reconstructs any grouping, gridsize 1 included.
    """
    values = to_dict(config)
    model = values["model"]
    if not model["N"]:
        logger.info("model.N not set: using the data's pattern size %d", data_n)
        model["N"] = data_n
    if model["gridsize"] == 1 and model["model_type"] == "pinn":
        side = SINGLE_PATTERN_TRAINING_GRIDSIZE
        logger.info(
            "gridsize 1: the network reads one pattern per pass and trains on %dx%d groups of "
            "neighbouring positions that must agree on one object",
            side,
            side,
        )
        model.update(gridsize=side, per_pattern_network=True)
        values["neighbor_count"] = max(values["neighbor_count"], side**2)
    return from_dict(TrainingConfig, values, source="run_cdi_example: config")


def _read_history(metrics_csv: Path) -> dict[str, list[float]]:
    """Per-epoch ``train_loss`` / ``val_loss`` from Lightning's CSV log."""
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    if not metrics_csv.is_file():
        return history
    with open(metrics_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            for key, column in (("train_loss", "train_loss_epoch"), ("val_loss", "val_loss")):
                if row.get(column):
                    history[key].append(float(row[column]))
    return history


def run_cdi_example(
    train_data: RawData | PtychoData,
    test_data: RawData | PtychoData | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    do_stitching: bool = False,
    *,
    execution: ExecutionConfig | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train on ``train_data`` (validating on ``test_data``): ``(amplitude, phase, results)``.

    With ``do_stitching`` the test scan is reconstructed (every position, the core stitcher)
    and its amplitude and phase returned, optionally flipped/transposed; otherwise they are
    None. ``M`` is accepted for compatibility (the core stitcher weights by the probe).
    ``results`` holds ``history`` (per-epoch losses), ``intensity_scale`` and ``model``.
    Lightning logs go to ``config.output_dir``, or a temporary directory when that is the
    current directory (Ptychodus passes ``Path()``), so nothing lands in the working dir.
    The trained model becomes the one ``ptycho.model_manager.save`` writes. With
    ``config.backend == "tensorflow"`` the TensorFlow backend trains (its archive loads back
    through :func:`load_inference_bundle` like any other).
    """
    del M
    from ptychopinn.workflows.execution import resolve_device
    from ptychopinn.workflows.infer import reconstruct
    from ptychopinn.workflows.train import train

    train_pd, test_pd = _as_data(train_data), _as_data(test_data)
    training = resolve_training_config(config, train_pd.N)
    execution = execution or ExecutionConfig(enable_progress_bar=False)
    with ExitStack() as stack:
        out = Path(training.output_dir or ".")
        if out.resolve() == Path.cwd().resolve():
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ptycho-train-")))
        if training.backend == "tensorflow":
            from ptychopinn.tf_backend.train import train as train_tensorflow

            result = train_tensorflow(
                train_pd, training, execution, test_data=test_pd, output_dir=out, progress=False
            )
            model = result.model
        else:
            result = train(train_pd, training, execution, test_data=test_pd, output_dir=out)
            model = result.module.model
        history = _read_history(out / "logs" / "metrics.csv")
    scale = intensity_scale_of(model)
    params.cfg["intensity_scale"] = scale
    model_manager.remember(model, training, execution)
    results: dict[str, Any] = {"history": history, "intensity_scale": scale, "model": model}
    if not (do_stitching and test_pd is not None):
        return None, None, results
    rec = reconstruct(
        model,
        test_pd,
        device=resolve_device(execution.accelerator),
        batch_size=execution.inference_batch_size,
    )
    obj = rec.object
    if flip_x:
        obj = obj[:, ::-1]
    if flip_y:
        obj = obj[::-1, :]
    if transpose:
        obj = obj.T
    results["reconstruction"] = rec
    return np.abs(obj), np.angle(obj), results


def save_outputs(
    amplitude: np.ndarray | None,
    phase: np.ndarray | None,
    results: dict[str, Any],
    output_prefix: str | os.PathLike[str],
) -> list[Path]:
    """Write ``history.json`` and, if given, the reconstruction (PNGs, ``reconstruction.npz``)."""
    from ptychopinn.plotting import save_object_pictures
    from ptychopinn.workflows.outputs import write_json

    out = Path(output_prefix)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    history = (results or {}).get("history")
    if history is not None:
        written.append(write_json({"history": history}, out / "history.json"))
    if amplitude is not None and phase is not None:
        obj = (np.asarray(amplitude) * np.exp(1j * np.asarray(phase))).astype(np.complex64)
        written += save_object_pictures(obj, out)
        written.append(atomic_savez(out / "reconstruction.npz", object=obj))
    return written
