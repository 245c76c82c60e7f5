"""Writing a reconstruction's files: object NPZ, pictures, metrics against ground truth."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptychopinn.atomic import atomic_savez, atomic_write
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import DataValidationError
from ptychopinn.metrics import evaluate_aligned, scanned_region_mask
from ptychopinn.plotting import save_comparison, save_object_pictures
from ptychopinn.workflows.infer import Reconstruction


def save_reconstruction_npz(rec: Reconstruction, path: str | os.PathLike) -> Path:
    """The complex object, stitching weights and positions as an NPZ (atomic)."""
    return atomic_savez(
        path, object=rec.object, weights=rec.weights, xcoords=rec.xcoords, ycoords=rec.ycoords
    )


def write_json(obj: dict, path: str | os.PathLike) -> Path:
    """``obj`` as indented JSON (atomic); NumPy scalars are written as floats."""
    text = json.dumps(obj, indent=2, default=float)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


@dataclass(frozen=True)
class OutputNames:
    """The file names of one result; ``suffix`` (e.g. ``"_refined"``) names a second one."""

    suffix: str = ""

    @property
    def picture_stem(self) -> str:
        return self.suffix.lstrip("_") or "reconstructed"

    @property
    def npz(self) -> str:
        return f"reconstruction{self.suffix}.npz"

    @property
    def metrics(self) -> str:
        return f"metrics{self.suffix}.json"

    @property
    def plot(self) -> str:
        return f"comparison_plot{self.suffix}.png"

    @property
    def pictures(self) -> tuple[str, str]:
        return f"{self.picture_stem}_amplitude.png", f"{self.picture_stem}_phase.png"


def remove_outputs(
    output_dir: str | os.PathLike, *, suffix: str = "", only_metrics: bool = False
) -> list[Path]:
    """Delete what :func:`write_outputs` with ``suffix`` wrote earlier (stale results)."""
    out, names = Path(output_dir), OutputNames(suffix)
    stale = [names.metrics, names.plot]
    if not only_metrics:
        stale += [names.npz, *names.pictures]
    removed = []
    for name in stale:
        path = out / name
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def write_outputs(
    rec: Reconstruction,
    data: PtychoData,
    output_dir: str | os.PathLike,
    *,
    comparison_plot: bool = True,
    suffix: str = "",
) -> dict | None:
    """Pictures + ``reconstruction.npz``; with ground truth also ``metrics.json`` and a plot.

    ``suffix`` (e.g. ``"_refined"``) names a second result written next to the first:
    ``reconstruction_refined.npz``, ``refined_amplitude.png``, ``metrics_refined.json``, ...
    Returns the metrics (None without ``objectGuess``).
    """
    bad = int(np.count_nonzero(~np.isfinite(rec.object)))
    if bad:
        cause = (
            "the refinement diverged (amplitudes far from photon counts? a smaller --refine_step)"
            if suffix
            else "the network's output for this scan is not finite (amplitudes far outside "
            "the training data's range?)"
        )
        raise DataValidationError(
            f"{data.source}: the reconstruction{suffix} has {bad} NaN/Inf pixel(s) of "
            f"{rec.object.size}: {cause}; reconstruction{suffix} not written"
        )
    out, names = Path(output_dir), OutputNames(suffix)
    out.mkdir(parents=True, exist_ok=True)
    illuminated = scanned_region_mask(
        rec.xcoords, rec.ycoords, data.N, rec.object.shape[-2:], margin=0
    )
    save_object_pictures(rec.object, out, stem=names.picture_stem, mask=illuminated)
    save_reconstruction_npz(rec, out / names.npz)
    if not data.object_is_truth:
        # No truth (a Ptychodus product's object is a guess): an earlier scan's metrics
        # must not pass for this one's.
        remove_outputs(out, suffix=suffix, only_metrics=True)
        return None
    metrics, aligned, mask = evaluate_aligned(
        rec.object,
        data.object,
        xcoords=rec.xcoords,
        ycoords=rec.ycoords,
        N=data.N,
        probe=data.probe,
    )
    write_json(metrics, out / names.metrics)
    if not comparison_plot:
        (out / names.plot).unlink(missing_ok=True)
    else:
        save_comparison(aligned, data.object, out / names.plot, mask=mask, metrics=metrics)
    return metrics
