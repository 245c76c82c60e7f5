"""Load, validate and save datasets in the NPZ contract (docs/data.md).

Files written by different tools disagree on details (raw counts vs. amplitudes, the legacy
``(N, N, M)`` stack, multi-mode probes), so every input, from a file or from memory, goes
through one conversion path that normalises it to :class:`PtychoData` and one validator that
reports each contract violation as a single :class:`DataValidationError` message of the form
``"{source}: key '{key}': expected ..., found ..."``.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptychopinn.atomic import atomic_savez
from ptychopinn.data.types import OBJECT_IS_TRUTH_KEY, PtychoData, evenly_spaced_index
from ptychopinn.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)

__all__ = ["DIFFRACTION_KINDS", "from_arrays", "load_npz", "save_npz", "validate_data"]

DIFFRACTION_KINDS = ("amplitude", "counts", "auto")
"""Accepted values of ``diffraction_kind``."""

_DIFF_KEYS = ("diff3d", "diffraction")
_KNOWN_KEYS = frozenset(
    {
        *_DIFF_KEYS,
        "xcoords",
        "ycoords",
        "xcoords_start",
        "ycoords_start",
        "probeGuess",
        "objectGuess",
        "scan_index",
        "Y",
        "diffraction_kind",
        "diffraction_is_counts",
    }
)
_POSITION_TOL = 1e-6
_INTEGER_TOL = 1e-4
_INTEGER_FRACTION = 0.99
_HEURISTIC_SAMPLE = 2_000_000


#: Largest canvas that positions may span without an objectGuess (2 GiB as complex64).
MAX_CANVAS_PIXELS = 1 << 28


def _error(source: str, key: str, expected: str, found: str) -> DataValidationError:
    """Build the single-line error every contract violation uses."""
    return DataValidationError(f"{source}: key '{key}': expected {expected}, found {found}")


def _describe(arr: np.ndarray) -> str:
    return f"shape {tuple(arr.shape)} dtype {arr.dtype}"


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


#: What a corrupt zip member raises when read: besides the usual I/O errors, an unsupported
#: compression (NotImplementedError), an encrypted member (RuntimeError) and a header that
#: claims an impossible shape (MemoryError).
_CORRUPT_MEMBER_ERRORS = (
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    MemoryError,
)


def read_npz_arrays(path: str | os.PathLike, keys: frozenset[str] | None = None) -> dict:
    """The arrays ``keys`` (all when None) of an NPZ file, never unpickling anything; any
    unreadable file or member becomes one :class:`DataValidationError` naming it."""
    return _read_npz(Path(path), keys)


def _read_npz(path: Path, keys: frozenset[str] | None = _KNOWN_KEYS) -> dict[str, Any]:
    """Read the arrays ``keys`` of an NPZ file without ever unpickling anything. Other
    members are named (value None) but left unread, so an unused member cannot make the
    file unreadable."""
    source = str(path)
    if not path.exists():
        raise DataValidationError(f"{source}: expected an existing NPZ file, found no such file")
    if not path.is_file():
        raise DataValidationError(f"{source}: expected an NPZ file, found a directory")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataValidationError(
            f"{source}: expected an NPZ archive of named arrays, found a single .npy array"
        )
    if not magic.startswith(b"PK"):
        raise DataValidationError(
            f"{source}: expected an NPZ (zip) archive, found a corrupt or non-zip file "
            f"(first bytes {magic!r})"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, *_CORRUPT_MEMBER_ERRORS) as exc:
        raise DataValidationError(
            f"{source}: expected a readable NPZ (zip) archive, found an unreadable or corrupt "
            f"file ({exc})"
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataValidationError(
            f"{source}: expected an NPZ archive of named arrays, found a single .npy array"
        )
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        for key in loaded.files:
            if keys is not None and key not in keys:
                logger.debug("%s: ignoring key '%s'", source, key)
                arrays[key] = None  # named in messages, never read
                continue
            try:
                arrays[key] = loaded[key]
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise _error(
                        source,
                        key,
                        "a numeric or string array",
                        "an object array (refused: loading it would unpickle code)",
                    ) from exc
                raise _error(source, key, "a readable array", f"a corrupt member ({exc})") from exc
            except _CORRUPT_MEMBER_ERRORS as exc:
                raise _error(
                    source,
                    key,
                    "a readable array",
                    f"a corrupt member ({type(exc).__name__}: {exc})",
                ) from exc
    return arrays


# ---------------------------------------------------------------------------------------------
# Conversion (shared by load_npz and from_arrays)
# ---------------------------------------------------------------------------------------------


def _as_array(value: Any, source: str, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufc":
        raise _error(source, key, "a numeric array", _describe(arr))
    return arr


def _diffraction_stack(
    raw: np.ndarray, source: str, key: str, positions: int | None = None
) -> np.ndarray:
    """Return the stack as (M, N, N), transposing the legacy (N, N, M) layout.

    ``positions`` (the number of x coordinates, if known) tells the legacy layout from
    non-square patterns of a scan with as many positions as pattern rows."""
    if raw.dtype.kind not in "iuf":
        raise _error(source, key, "a real-valued (M, N, N) array", _describe(raw))
    if raw.ndim != 3:
        raise _error(source, key, "a 3-D (M, N, N) stack of square patterns", _describe(raw))
    legacy = positions is None or positions != raw.shape[0] or positions == raw.shape[2]
    if raw.shape[0] == raw.shape[1] != raw.shape[2] and legacy:
        warnings.warn(
            f"{source}: key '{key}': legacy (N, N, M) layout {raw.shape} transposed to "
            f"(M, N, N) = {(raw.shape[2], raw.shape[0], raw.shape[1])}",
            UserWarning,
            stacklevel=4,
        )
        raw = np.ascontiguousarray(np.transpose(raw, (2, 0, 1)))
    if raw.shape[1] != raw.shape[2]:
        raise _error(source, key, "square patterns (M, N, N)", f"shape {tuple(raw.shape)}")
    return raw


def _metadata_kind(arrays: Mapping[str, Any], source: str) -> str | None:
    """The diffraction kind recorded in the file, if any."""
    if "diffraction_kind" in arrays:
        value = np.asarray(arrays["diffraction_kind"])
        text = str(value.item()).strip().lower() if value.size == 1 else None
        if text not in ("counts", "amplitude"):
            raise _error(source, "diffraction_kind", "'counts' or 'amplitude'", repr(value))
        return text
    if "diffraction_is_counts" in arrays:
        value = np.asarray(arrays["diffraction_is_counts"])
        if value.size != 1 or value.dtype.kind not in "biu":
            raise _error(source, "diffraction_is_counts", "a boolean scalar", _describe(value))
        return "counts" if bool(value.item()) else "amplitude"
    return None


def _looks_like_counts(raw: np.ndarray) -> tuple[bool, str]:
    """Heuristic for float stacks: integer-valued data with values above 1 are counts."""
    flat = raw.reshape(-1)
    step = max(1, flat.size // _HEURISTIC_SAMPLE)
    sample = flat[::step].astype(np.float64)
    nonzero = sample[sample != 0]
    if nonzero.size == 0:
        return False, "all values are zero"
    frac = float(np.mean(np.abs(nonzero - np.round(nonzero)) < _INTEGER_TOL))
    vmax = float(np.max(raw))
    if frac >= _INTEGER_FRACTION and vmax > 1:
        return True, f"{frac:.1%} of non-zero values are integers and max is {vmax:g}"
    return False, f"{frac:.1%} of non-zero values are integers, max is {vmax:g}"


def _resolve_kind(
    raw: np.ndarray, requested: str, meta_kind: str | None, source: str, key: str
) -> tuple[str, str]:
    """Decide whether ``raw`` holds counts or amplitudes, and why."""
    if requested not in DIFFRACTION_KINDS:
        raise ConfigError(
            f"{source}: diffraction_kind: expected one of {DIFFRACTION_KINDS}, found {requested!r}"
        )
    if requested != "auto":
        return requested, "requested by the caller"
    if raw.dtype.kind in "iu":
        return "counts", f"integer dtype {raw.dtype}"
    if meta_kind is not None:
        return meta_kind, "metadata key in the data"
    is_counts, why = _looks_like_counts(raw)
    return ("counts" if is_counts else "amplitude"), f"heuristic: {why}"


def _check_values(arr: np.ndarray, source: str, key: str, *, nonnegative: bool = False) -> None:
    """Raise on NaN/Inf (and on negatives when asked)."""
    finite = np.isfinite(arr)
    if not finite.all():
        n_bad = int(arr.size - np.count_nonzero(finite))
        raise _error(source, key, "finite values", f"{n_bad} NaN/Inf value(s)")
    if nonnegative and arr.size:
        n_neg = int(np.count_nonzero(arr < 0))
        if n_neg:
            raise _error(
                source, key, "non-negative values", f"{n_neg} negative value(s), min {arr.min():g}"
            )


def _vector(arrays: Mapping[str, Any], key: str, source: str, dtype: type) -> np.ndarray | None:
    """A 1-D array (an (M, 1) column is accepted), or None when absent."""
    if arrays.get(key) is None:
        return None
    arr = _as_array(arrays[key], source, key)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.dtype.kind == "c":
        raise _error(source, key, "a real 1-D (M,) array", _describe(arr))
    if dtype is np.int64 and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise _error(source, key, "integer values", "non-integer values")
    return arr.astype(dtype)


def _probe(arrays: Mapping[str, Any], source: str) -> np.ndarray:
    if arrays.get("probeGuess") is None:
        raise _error(source, "probeGuess", "an (N, N) complex probe", "no such key")
    probe = _as_array(arrays["probeGuess"], source, "probeGuess")
    if probe.ndim == 3 and probe.shape[0] > 0:
        if probe.shape[0] > 1:
            warnings.warn(
                f"{source}: key 'probeGuess': {probe.shape[0]} probe modes found; "
                "using mode 0 only",
                UserWarning,
                stacklevel=4,
            )
        probe = probe[0]
    if probe.ndim != 2:
        raise _error(source, "probeGuess", "an (N, N) or (modes, N, N) array", _describe(probe))
    return probe.astype(np.complex64)


def _labels(arrays: Mapping[str, Any], source: str) -> np.ndarray | None:
    if arrays.get("Y") is None:
        return None
    labels = _as_array(arrays["Y"], source, "Y")
    if labels.ndim == 4 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    return labels.astype(np.complex64)


def _required(arrays: Mapping[str, Any], key: str, expected: str, source: str) -> None:
    if arrays.get(key) is None:
        found = f"no such key (keys found: {sorted(arrays)})"
        raise _error(source, key, expected, found)


def _convert(
    arrays: Mapping[str, Any],
    source: str,
    diffraction_kind: str,
    *,
    check_values: bool,
) -> PtychoData:
    """Normalise raw arrays (file or memory) into a PtychoData with float32 amplitudes."""
    key = next((k for k in _DIFF_KEYS if arrays.get(k) is not None), None)
    if key is None:
        raise _error(
            source,
            "diff3d",
            "diffraction patterns under 'diff3d' or 'diffraction'",
            f"only keys {sorted(arrays)}",
        )
    xcoords = arrays.get("xcoords")
    positions = None if xcoords is None else int(np.size(xcoords))
    raw = _diffraction_stack(_as_array(arrays[key], source, key), source, key, positions)
    if check_values:
        _check_values(raw, source, key, nonnegative=True)
    kind, reason = _resolve_kind(raw, diffraction_kind, _metadata_kind(arrays, source), source, key)
    logger.info("%s: treating '%s' as %s (%s)", source, key, kind, reason)
    amplitude = raw.astype(np.float32)  # always a fresh copy, safe to modify in place
    if kind == "counts":
        with np.errstate(invalid="ignore"):
            np.sqrt(amplitude, out=amplitude)

    _required(arrays, "xcoords", "(M,) float64 x positions", source)
    _required(arrays, "ycoords", "(M,) float64 y positions", source)
    xcoords = _vector(arrays, "xcoords", source, np.float64)
    ycoords = _vector(arrays, "ycoords", source, np.float64)
    obj = arrays.get("objectGuess")
    metadata = {
        "diffraction_key": key,
        "input_diffraction_kind": kind,
        "diffraction_kind_reason": reason,
    }
    if obj is not None:
        obj = _as_array(obj, source, "objectGuess").astype(np.complex64)
        if obj.size and not np.any(obj):  # a placeholder: nothing to score against
            warnings.warn(
                f"{source}: key 'objectGuess' is all zeros: it sets the object canvas but is "
                "not used as ground truth (no metrics)",
                UserWarning,
                stacklevel=3,
            )
            metadata[OBJECT_IS_TRUTH_KEY] = False
    return PtychoData(
        diffraction=amplitude,
        xcoords=xcoords,
        ycoords=ycoords,
        probe=_probe(arrays, source),
        object=obj,
        scan_index=_vector(arrays, "scan_index", source, np.int64),
        xcoords_start=_vector(arrays, "xcoords_start", source, np.float64),
        ycoords_start=_vector(arrays, "ycoords_start", source, np.float64),
        labels=_labels(arrays, source),
        source=source,
        metadata=metadata,
    )


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _check_shape(arr: np.ndarray | None, shape: tuple[int, ...], source: str, key: str) -> None:
    if arr is not None and tuple(arr.shape) != shape:
        raise _error(source, key, f"shape {shape}", f"shape {tuple(arr.shape)}")


def _check_canvas(data: PtychoData, source: str, allow_outside: bool) -> None:
    """Every patch must lie inside the object, or the stitched object would be cropped."""
    if data.object is None:
        return
    h, w = data.object.shape
    half = (data.N - 1) / 2
    x, y = data.xcoords, data.ycoords
    x_hi, y_hi = w - 1 - half, h - 1 - half
    bad = (
        (x < half - _POSITION_TOL)
        | (x > x_hi + _POSITION_TOL)
        | (y < half - _POSITION_TOL)
        | (y > y_hi + _POSITION_TOL)
    )
    n_bad = int(np.count_nonzero(bad))
    if not n_bad:
        return
    first = int(np.flatnonzero(bad)[0])
    message = (
        f"{source}: key 'xcoords/ycoords': expected every {data.N}x{data.N} patch inside the "
        f"{h}x{w} objectGuess (x in [{half:g}, {x_hi:g}], y in [{half:g}, {y_hi:g}]), found "
        f"{n_bad} of {data.n_positions} position(s) outside, first at index {first} "
        f"(x={x[first]:g}, y={y[first]:g})"
    )
    if not allow_outside:
        raise DataValidationError(message)
    # A patch that does not touch the object at all is not an overhang: when most of the
    # scan misses the object, the positions' unit or origin is wrong and the stitched
    # object would come out empty.
    missing = (x < -half) | (x > w - 1 + half) | (y < -half) | (y > h - 1 + half)
    n_missing = int(np.count_nonzero(missing))
    if 2 * n_missing > data.n_positions:
        raise DataValidationError(
            f"{message}; {n_missing} of them do not touch the object at all "
            "(positions in another unit, or about another origin?)"
        )
    warnings.warn(message, UserWarning, stacklevel=4)


def _validate(
    data: PtychoData, *, allow_outside: bool, check_diffraction_values: bool = True
) -> None:
    source = data.source
    diff_key = data.metadata.get("diffraction_key", "diff3d")
    diff = np.asarray(data.diffraction)
    if diff.ndim != 3 or diff.shape[1] != diff.shape[2]:
        raise _error(source, diff_key, "an (M, N, N) stack of square patterns", _describe(diff))
    m, n = diff.shape[0], diff.shape[1]
    if m == 0:
        raise _error(source, diff_key, "at least one scan position", "0 patterns")
    if check_diffraction_values:
        _check_values(diff, source, diff_key, nonnegative=True)
    for key, arr in (
        ("xcoords", data.xcoords),
        ("ycoords", data.ycoords),
        ("xcoords_start", data.xcoords_start),
        ("ycoords_start", data.ycoords_start),
        ("scan_index", data.scan_index),
    ):
        arr = np.asarray(arr)
        if arr.shape != (m,):
            raise _error(
                source,
                key,
                f"one value per diffraction pattern, shape ({m},)",
                f"shape {tuple(arr.shape)}",
            )
        _check_values(arr, source, key)
    _check_shape(np.asarray(data.probe), (n, n), source, "probeGuess")
    _check_values(np.asarray(data.probe), source, "probeGuess")
    if not np.any(np.asarray(data.probe)):
        raise _error(source, "probeGuess", "an illumination with non-zero energy", "all zeros")
    _check_signal(diff, source, diff_key)
    if data.object is not None:
        obj = np.asarray(data.object)
        if obj.ndim != 2:
            raise _error(source, "objectGuess", "a 2-D (H, W) array", _describe(obj))
        _check_values(obj, source, "objectGuess")
    if data.labels is not None:
        _check_shape(np.asarray(data.labels), (m, n, n), source, "Y")
        _check_values(np.asarray(data.labels), source, "Y")
    if data.object is None:
        _check_extent(data, source)
    _check_span(data, source)
    _check_canvas(data, source, allow_outside)


def _check_signal(diff: np.ndarray, source: str, key: str) -> None:
    """Some pattern must hold counts (sampled evenly, so a memory map is not read whole)."""
    if not np.any(diff[evenly_spaced_index(diff.shape[0], 4096)]) and not np.any(diff):
        raise _error(source, key, "diffraction patterns with some signal", "all zeros")


def _check_span(data: PtychoData, source: str) -> None:
    """Warn about a scan of several positions that spans less than a pixel: its patterns see
    one spot of the object, and nothing overlaps to reconstruct from."""
    span_x, span_y = float(np.ptp(data.xcoords)), float(np.ptp(data.ycoords))
    if data.n_positions > 1 and max(span_x, span_y) < 1.0:
        logger.warning(
            "%s: the %d scan positions span %.3g x %.3g px in all: are 'xcoords'/'ycoords' "
            "in metres instead of object pixels, or all at one place?",
            source,
            data.n_positions,
            span_x,
            span_y,
        )


def _check_extent(data: PtychoData, source: str) -> None:
    """Without ``objectGuess`` the canvas is sized from the positions: refuse extents no
    object pixel grid has (coordinates in metres or micrometres), move positions whose
    patches reach below 0 onto the canvas (with a warning)."""
    half = (data.N - 1) / 2
    x, y = np.asarray(data.xcoords), np.asarray(data.ycoords)
    shift_x = max(0.0, float(np.ceil(half - x.min())))
    shift_y = max(0.0, float(np.ceil(half - y.min())))
    if shift_x or shift_y:
        logger.warning(
            "%s: patches reach below pixel 0 and there is no objectGuess to define the "
            "canvas; positions moved by (+%g, +%g) px onto it (the outputs use the moved "
            "coordinates)",
            source,
            shift_x,
            shift_y,
        )
        data.xcoords = x + shift_x
        data.ycoords = y + shift_y
        data.xcoords_start = np.asarray(data.xcoords_start) + shift_x
        data.ycoords_start = np.asarray(data.ycoords_start) + shift_y
        data.metadata["coordinate_shift"] = (shift_x, shift_y)
    # The canvas the data will be stitched on (PtychoData.canvas_shape), before allocating it.
    h, w = (int(v) for v in data.canvas_shape())
    if h * w > MAX_CANVAS_PIXELS:
        raise _error(
            source,
            "xcoords/ycoords",
            f"probe positions in object pixels (a canvas of at most {MAX_CANVAS_PIXELS} px)",
            f"positions x in [{x.min():.4g}, {x.max():.4g}], y in [{y.min():.4g}, "
            f"{y.max():.4g}] needing a {h} x {w} canvas (wrong unit? convert metres to pixels "
            "by dividing by the object pixel size)",
        )
    _warn_sparse_canvas(data, source, h, w)


#: A canvas more than this many times the area the patterns cover has a stray position.
SPARSE_CANVAS_RATIO = 50.0


def _warn_sparse_canvas(data: PtychoData, source: str, h: int, w: int) -> None:
    """Warn when a position far from the rest stretches the canvas (one stray coordinate
    makes the outputs, and the memory to write them, grow with the square of its distance)."""
    ratio = h * w / (data.n_positions * data.N**2)
    if ratio <= SPARSE_CANVAS_RATIO:
        return
    x, y = np.asarray(data.xcoords), np.asarray(data.ycoords)
    cx, cy = float(np.median(x)), float(np.median(y))
    far = int(np.argmax(np.hypot(x - cx, y - cy)))
    logger.warning(
        "%s: key 'xcoords/ycoords': the %d x %d px canvas is %.0f times the area the %d "
        "patterns cover; position %d at (x=%.4g, y=%.4g) lies far from the scan's median "
        "(%.4g, %.4g): check the coordinates, or give objectGuess to fix the canvas",
        source,
        h,
        w,
        ratio,
        data.n_positions,
        far,
        x[far],
        y[far],
        cx,
        cy,
    )


def validate_data(data: PtychoData, *, allow_outside: bool = False) -> None:
    """Check ``data`` against the data contract; raise DataValidationError on the first problem.

    ``allow_outside=True`` downgrades "scan positions outside the object canvas" to a warning.
    """
    _validate(data, allow_outside=allow_outside)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def load_npz(
    path: str | os.PathLike[str],
    *,
    diffraction_kind: str = "auto",
    validate: bool = True,
    allow_outside: bool = False,
) -> PtychoData:
    """Load an NPZ dataset; diffraction is returned as float32 amplitudes.

    ``diffraction_kind`` says whether the file holds ``"amplitude"`` or ``"counts"``; with
    ``"auto"`` integer dtypes mean counts, then a ``diffraction_kind`` /
    ``diffraction_is_counts`` key in the file decides, then a heuristic (logged at INFO).
    """
    path = Path(path)
    arrays = _read_npz(path)
    data = _convert(arrays, str(path), diffraction_kind, check_values=validate)
    if validate:
        _validate(data, allow_outside=allow_outside, check_diffraction_values=False)
    return data


def from_arrays(
    diffraction: Any,
    xcoords: Any,
    ycoords: Any,
    probe: Any,
    *,
    object: Any = None,
    labels: Any = None,
    diffraction_kind: str = "auto",
    source: str = "<memory>",
    allow_outside: bool = False,
) -> PtychoData:
    """Build and validate a dataset from in-memory arrays (same rules as :func:`load_npz`)."""
    arrays = {
        "diff3d": diffraction,
        "xcoords": xcoords,
        "ycoords": ycoords,
        "probeGuess": probe,
        "objectGuess": object,
        "Y": labels,
    }
    data = _convert(arrays, source, diffraction_kind, check_values=True)
    _validate(data, allow_outside=allow_outside, check_diffraction_values=False)
    return data


def save_npz(data: PtychoData, path: str | os.PathLike[str], *, as_counts: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + rename); return the path.

    ``as_counts=True`` stores squared amplitudes (what Ptychodus writes); the
    ``diffraction_kind`` key records which was written so :func:`load_npz` needs no guessing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "diff3d": data.counts if as_counts else np.asarray(data.diffraction, dtype=np.float32),
        "xcoords": np.asarray(data.xcoords, dtype=np.float64),
        "ycoords": np.asarray(data.ycoords, dtype=np.float64),
        "xcoords_start": np.asarray(data.xcoords_start, dtype=np.float64),
        "ycoords_start": np.asarray(data.ycoords_start, dtype=np.float64),
        "scan_index": np.asarray(data.scan_index, dtype=np.int64),
        "probeGuess": np.asarray(data.probe, dtype=np.complex64),
        "diffraction_kind": np.array("counts" if as_counts else "amplitude"),
    }
    if data.object is not None:
        arrays["objectGuess"] = np.asarray(data.object, dtype=np.complex64)
    if data.labels is not None:
        arrays["Y"] = np.asarray(data.labels, dtype=np.complex64)

    atomic_savez(path, **arrays)
    logger.info("wrote %s (%d positions)", path, data.n_positions)
    return path
