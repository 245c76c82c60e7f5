"""Conversions shared by the ``ptycho`` and ``ptycho_torch`` compatibility packages.

Ptychodus hands these packages raw detector counts, multi-mode probes and positions in object
pixels, but never the object canvas it will put the result on. These helpers turn such input
into the core's :class:`~ptychopinn.data.types.PtychoData` and pick a canvas that lines up with
the object geometry Ptychodus uses.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from ptychopinn.data.npz import MAX_CANVAS_PIXELS, from_arrays
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import DataValidationError

logger = logging.getLogger(__name__)

__all__ = ["dominant_probe_mode", "scan_canvas_shape", "to_ptycho_data", "warn"]


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn Python callers; Ptychodus gets it as a log record (``ptychopinn.warning_log``)."""
    warnings.warn(message, category, stacklevel=3)


def dominant_probe_mode(probe: np.ndarray, source: str = "probeGuess") -> np.ndarray:
    """An (N, N) probe: mode 0 of a (modes, N, N) stack, with a warning naming its power share.

    The engine models one coherent mode. Mode 0 is the primary mode in Ptychodus' ordering and
    the one the core NPZ loader keeps, so training (from files) and inference (from memory)
    use the same mode.
    """
    arr = np.asarray(probe)
    if arr.ndim != 3:
        return arr
    if arr.shape[0] == 0:
        raise DataValidationError(
            f"{source}: expected an (N, N) or (modes, N, N) probe, found shape {arr.shape}"
        )
    if arr.shape[0] > 1:
        power = np.sum(np.abs(arr) ** 2, axis=(-2, -1))
        share = float(power[0] / power.sum()) if power.sum() > 0 else 0.0
        warn(
            f"{source}: {arr.shape[0]} probe modes found; the engine models one coherent "
            f"mode, using mode 0 ({share:.0%} of the probe power)"
        )
    return arr[0]


def scan_canvas_shape(xcoords: np.ndarray, ycoords: np.ndarray, N: int) -> tuple[int, int]:
    """(H, W) of a canvas whose centre is the centre of the scan's bounding box.

    Ptychodus sizes an object to the scan's bounding box plus the probe and centres it there,
    so the object's pixel ``(W-1)/2`` is the scan's mid-range: ``W = 2*mid + 1``. The canvas is
    enlarged when that would cut off part of a patch.
    """
    shape = []
    for axis, coords in (("y", np.asarray(ycoords, float)), ("x", np.asarray(xcoords, float))):
        if coords.size == 0 or not np.all(np.isfinite(coords)):
            raise DataValidationError(
                f"scan positions ({axis}): expected finite object pixel coordinates, found "
                f"{'none' if coords.size == 0 else 'NaN or infinite values'}"
            )
        below = (N - 1) / 2 - float(coords.min())
        if below > 0.5:
            warn(
                f"scan positions ({axis}): patches reach {below:.1f} px below pixel 0 of the "
                "object grid (positions left of / above the object); those parts are cut off"
            )
        mid = 0.5 * (float(coords.min()) + float(coords.max()))
        size = int(round(2 * mid + 1))
        needed = int(math.ceil(float(coords.max()) + (N - 1) / 2)) + 1
        shape.append(max(size, needed, N))
    if shape[0] * shape[1] > MAX_CANVAS_PIXELS:
        raise DataValidationError(
            f"scan positions: expected object pixel coordinates (a canvas of at most "
            f"{MAX_CANVAS_PIXELS} px), found positions needing a {shape[0]} x {shape[1]} canvas "
            "(wrong unit? metres must be divided by the object pixel size)"
        )
    return shape[0], shape[1]


def to_ptycho_data(
    diffraction: np.ndarray,
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    probe: np.ndarray,
    *,
    obj: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    diffraction_kind: str = "auto",
    source: str = "<memory>",
) -> PtychoData:
    """Validate in-memory arrays into a PtychoData (counts or amplitudes, see ``load_npz``).

    Patches poking out of the object canvas are allowed with a warning: Ptychodus sizes the
    object to the scan plus the probe, so a sub-pixel overhang is normal there.
    """
    return from_arrays(
        diffraction,
        xcoords,
        ycoords,
        dominant_probe_mode(probe, f"{source}: probeGuess"),
        object=obj,
        labels=labels,
        diffraction_kind=diffraction_kind,
        source=source,
        allow_outside=True,
    )
