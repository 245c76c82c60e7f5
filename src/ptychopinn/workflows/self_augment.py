"""More training objects from the measured one: mirrored copies of its first reconstruction.

A model trained on one scan learns to invert that object's patterns; an unseen object's
patterns are new to it, and training on several objects is what carries over (docs/quality.md,
"Training on several scans"). A beamline often has one scan. Its own object, mirrored about
the scan centre and "measured" again with the same probe, positions and dose (Poisson counts
drawn afresh), is another object of the same kind at no cost. The copies need the object
first: a short training on the measured scan reconstructs it, a few epochs of object
refinement against the measured patterns sharpen it, and the final model is then trained
from fresh weights on the measured scan and its copies.

The training loss only ever compares predicted and simulated-or-measured patterns, so the
copies teach the network to invert more patterns; they are never used as labels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ptychopinn.atomic import atomic_write
from ptychopinn.data.simulate.diffraction import (
    expected_totals,
    extract_patches_exact,
    simulate_diffraction,
)
from ptychopinn.data.types import PtychoData, evenly_spaced_index
from ptychopinn.errors import DataValidationError
from ptychopinn.model.pinn import mean_pattern_energy
from ptychopinn.physics.thinning import look_like_counts
from ptychopinn.system_memory import refuse_over_half

log = logging.getLogger(__name__)

#: The mirror images used, in order (at most this many copies per scan).
MIRRORS: tuple[str, ...] = ("left-right", "up-down", "rotated 180 degrees")

#: Share of ``nepochs`` spent on the first, measured-scan-only training.
FIRST_STAGE_SHARE = 0.25

#: Object refinement epochs between the first training and the copies.
REFINE_EPOCHS = 50

#: Directory (in the output directory) of the first stage's checkpoints and logs.
FIRST_STAGE_DIR = "first_stage"

#: File (in the first stage's directory) holding the objects the copies are made from.
OBJECTS_FILE = "first_objects.npz"

#: Patterns simulated at once when making a copy.
SIMULATION_CHUNK = 1024


def stage_epochs(nepochs: int, copies: int) -> tuple[int, int]:
    """Epochs of the first stage (measured scans) and of the second (scans and copies).

    The second stage's epochs are ``1 + copies`` times longer, so the two stages together
    take about as many optimiser steps as ``nepochs`` epochs on the measured scans alone.
    """
    first = max(1, round(nepochs * FIRST_STAGE_SHARE))
    second = max(1, round((nepochs - first) / (1 + copies)))
    return first, second


def _mirror(kind: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Positions on the original object and the patch axes to flip, for a copy mirrored
    about the scan centre: the copy's patch at (x, y) is the original's patch at the
    mirrored position, flipped."""
    cx = 0.5 * (float(x.min()) + float(x.max()))
    cy = 0.5 * (float(y.min()) + float(y.max()))
    if kind == "left-right":
        return 2 * cx - x, y, (2,)
    if kind == "up-down":
        return x, 2 * cy - y, (1,)
    if kind == "rotated 180 degrees":
        return 2 * cx - x, 2 * cy - y, (1, 2)
    raise ValueError(f"unknown mirror {kind!r}; expected one of {MIRRORS}")


def _mirrored_patches(obj: np.ndarray, xs: np.ndarray, ys: np.ndarray, n: int, axes: tuple):
    return np.ascontiguousarray(np.flip(extract_patches_exact(obj, xs, ys, n), axis=axes))


def mirrored_copy(scan: PtychoData, obj: np.ndarray, kind: str, seed: int) -> PtychoData:
    """A scan of ``obj`` mirrored about the centre of ``scan``'s positions, with ``scan``'s
    probe and positions and its mean counts per pattern (Poisson noise when the measured
    patterns are counts). Simulated :data:`SIMULATION_CHUNK` patterns at a time, so memory
    beyond the copy itself stays bounded on large scans."""
    x = np.asarray(scan.xcoords, dtype=np.float64)
    y = np.asarray(scan.ycoords, dtype=np.float64)
    xs, ys, axes = _mirror(kind, x, y)
    sample = np.asarray(scan.diffraction[evenly_spaced_index(scan.n_positions, 256)])
    mean_counts = mean_pattern_energy(sample, max_patterns=None)
    if not mean_counts > 0:
        raise DataValidationError(f"{scan.source}: the diffraction patterns are all zero")
    n, m = scan.N, scan.n_positions
    chunks = [slice(i, min(i + SIMULATION_CHUNK, m)) for i in range(0, m, SIMULATION_CHUNK)]
    probe = np.asarray(scan.probe, dtype=np.complex64)
    totals = np.concatenate(
        [expected_totals(probe, _mirrored_patches(obj, xs[c], ys[c], n, axes)) for c in chunks]
    )
    if not totals.mean() > 0:
        raise DataValidationError(f"{scan.source}: the first object is zero where the probe is")
    scaled = (probe * np.sqrt(mean_counts / totals.mean())).astype(np.complex64)
    poisson = look_like_counts(sample)
    rng = np.random.default_rng(seed)
    amplitudes = np.empty((m, n, n), dtype=np.float32)
    for c in chunks:
        counts, _ = simulate_diffraction(
            obj,
            scaled,
            x[c],
            y[c],
            nphotons=None,
            poisson=poisson,
            seed=rng,
            patches=_mirrored_patches(obj, xs[c], ys[c], n, axes),
        )
        amplitudes[c] = np.sqrt(counts)
    return PtychoData(
        diffraction=amplitudes,
        xcoords=x,
        ycoords=y,
        probe=scaled,
        source=f"{scan.source} ({kind} copy)",
        metadata={"self_augmentation": kind},
    )


def copies_bytes(scans: Sequence[PtychoData], copies: int) -> int:
    """Memory the mirrored copies of ``scans`` take (float32 amplitudes)."""
    return copies * sum(s.n_positions * s.N * s.N * 4 for s in scans)


def check_copies_fit(
    scans: Sequence[PtychoData], copies: int, available: int | None, processes: int = 1
) -> None:
    """Refuse, before any training, copies that would take more than half of the memory
    ``available`` (bytes; None: unknown, not checked). With DDP each of the node's
    ``processes`` builds its own copies."""
    each = f" ({processes} training processes, each its own copies)" if processes > 1 else ""
    refuse_over_half(
        processes * copies_bytes(scans, copies),
        available,
        f"self_augmentation: {copies} mirrored copies of the training scan(s){each} need",
        "use fewer copies, n_subsample, or self_augmentation=0",
    )


def mirrored_copies(
    scans: Sequence[PtychoData], objects: Sequence[np.ndarray], copies: int, seed: int
) -> list[PtychoData]:
    """``copies`` mirrored copies of every scan (the order of :data:`MIRRORS`)."""
    out = []
    for i, (scan, obj) in enumerate(zip(scans, objects, strict=True)):
        for j, kind in enumerate(MIRRORS[:copies]):
            out.append(mirrored_copy(scan, obj, kind, seed=seed + 1000 * i + j))
    return out


def first_objects(
    model, scans: Sequence[PtychoData], *, device="cpu", progress: bool = False
) -> list[np.ndarray]:
    """Each scan reconstructed by ``model`` and refined (:data:`REFINE_EPOCHS` epochs of
    object refinement against its measured patterns, the model's probe)."""
    from ptychopinn.refine.object import ObjectRefineSettings, refine_object
    from ptychopinn.workflows.infer import reconstruct

    probe = model.counts_probe().detach().cpu().numpy()
    objects = []
    for scan in scans:
        start = reconstruct(model, scan, device=device, progress=progress).object
        refined = refine_object(
            start,
            probe,
            scan.diffraction,
            scan.coords,
            ObjectRefineSettings(epochs=REFINE_EPOCHS),
            device=device,
            progress=progress,
        )
        log.info(
            "%s: first reconstruction refined (%d epochs, %.1f s)",
            scan.source,
            refined.epochs_done,
            refined.seconds,
        )
        objects.append(refined.object.astype(np.complex64))
    return objects


def save_objects(path: Path, objects: Sequence[np.ndarray]) -> None:
    """Write the first objects (what a resumed second stage rebuilds its copies from)."""
    arrays = {f"object_{i}": o for i, o in enumerate(objects)}
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def load_objects(path: Path, count: int) -> list[np.ndarray]:
    """The first objects saved by :func:`save_objects` (``count`` of them)."""
    with np.load(path) as f:
        missing = [f"object_{i}" for i in range(count) if f"object_{i}" not in f.files]
        if missing:
            raise DataValidationError(
                f"{path}: expected the first objects of {count} scan(s), missing {missing}"
            )
        return [f[f"object_{i}"] for i in range(count)]
