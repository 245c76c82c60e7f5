"""Ptychodus product/diffraction files and CXI files <-> :class:`PtychoData`.

Ptychodus (the APS ptychography application) keeps a scan in two HDF5 files: ``product.h5``
(probe, object and probe positions in metres, with their pixel sizes) and ``diffraction.h5``
(raw detector counts, indexed like the positions). CXI files keep the detector data, the
instrument geometry and the sample translation in one file. This module reads both with
Ptychodus' own readers and geometry (the optional ``ptychodus`` extra, imported lazily),
converts them to the NPZ contract (amplitudes, object pixel coordinates; docs/data.md,
"Ptychodus and CXI files"), and writes a reconstruction back as a Ptychodus product with
Ptychodus' own writer, placed so that Ptychodus pairs it with the same positions.

Every problem with a file is one :class:`DataValidationError` naming the file and the
field; a missing extra is one :class:`ConfigError`.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ptychopinn.atomic import atomic_write
from ptychopinn.data.npz import from_arrays, load_npz
from ptychopinn.data.types import OBJECT_IS_TRUTH_KEY, PtychoData
from ptychopinn.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from ptychopinn.workflows.infer import Reconstruction

logger = logging.getLogger(__name__)

__all__ = [
    "DIFFRACTION_FILE_NAME",
    "GEOMETRY_KEY",
    "PRODUCT_SUFFIXES",
    "load_cxi_scan",
    "load_product_scan",
    "load_scan",
    "ptychodus_available",
    "save_product",
]

#: The diffraction file Ptychodus writes next to ``product.h5`` (its StandardFileLayout).
DIFFRACTION_FILE_NAME = "diffraction.h5"
#: File suffixes read as a Ptychodus product.
PRODUCT_SUFFIXES = (".h5", ".hdf5")
#: ``PtychoData.metadata`` key holding the physical geometry of a scan read from a file
#: with units (see :func:`_geometry`); :func:`save_product` writes the result back with it.
GEOMETRY_KEY = "physical_geometry"
BAD_PIXEL_MODES = ("inpaint", "zero")
#: Relative disagreement between the object pixel size and the far-field pixel size of the
#: detector geometry above which a warning is logged.
_PIXEL_SIZE_WARN = 0.01
_EXTRA_HINT = "needs the optional 'ptychodus' extra: pip install 'ptychopinn[ptychodus]'"


def ptychodus_available() -> bool:
    """Whether the optional ``ptychodus`` package can be imported."""
    try:
        return importlib.util.find_spec("ptychodus") is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


def _require_ptychodus(source: str, what: str) -> None:
    """One ConfigError line when the extra is missing (the import happens where used)."""
    try:
        import ptychodus  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{source}: {what} {_EXTRA_HINT}") from exc


def _error(
    source: str | os.PathLike,
    field: str,
    expected: str,
    found: str,
    *,
    attribute_of: str | None = None,
) -> DataValidationError:
    """The one-line message: file, field (or HDF5 attribute of a dataset), expected, found."""
    label = f"attribute '{field}' of '{attribute_of}'" if attribute_of else f"field '{field}'"
    return DataValidationError(f"{source}: {label}: expected {expected}, found {found}")


def _reader_error(exc: BaseException) -> str:
    """The message of an exception raised inside Ptychodus' or h5py's readers."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text or type(exc).__name__


def _positive_length(
    value: Any,
    source: str | os.PathLike,
    field: str,
    *,
    attribute_of: str | None = None,
    unit: str = "metres",
) -> float:
    """A pixel size, distance or energy: finite and > 0 (else an error naming the field)."""
    try:
        length = float(value)
    except (TypeError, ValueError):
        raise _error(
            source, field, f"a number in {unit}", repr(value), attribute_of=attribute_of
        ) from None
    if not math.isfinite(length) or length <= 0:
        raise _error(
            source,
            field,
            f"a finite value > 0 in {unit}",
            repr(length),
            attribute_of=attribute_of,
        )
    return length


def _finite(arr: np.ndarray, source: str | os.PathLike, field: str) -> np.ndarray:
    bad = ~np.isfinite(arr)
    if bad.any():
        raise _error(source, field, "finite values", f"{int(bad.sum())} NaN/Inf value(s)")
    return arr


# ---------------------------------------------------------------------------------------------
# Shared conversion pieces
# ---------------------------------------------------------------------------------------------


def _probe_mode0(probes: Any, source: str, field: str) -> np.ndarray:
    """Mode 0 of a Ptychodus ProbeSequence (the first coherent mode without OPR weights,
    as Ptychodus' own PtychoPINN front-end passes it, then its first incoherent mode)."""
    array = probes.get_probe_no_opr().get_array()  # (incoherent modes, H, W)
    n_coherent, n_incoherent = probes.num_coherent_modes, array.shape[0]
    if n_coherent > 1 or n_incoherent > 1:
        warnings.warn(
            f"{source}: field '{field}': {n_coherent} coherent x {n_incoherent} incoherent "
            "probe mode(s) found; using mode 0 only",
            UserWarning,
            stacklevel=4,
        )
    probe = np.asarray(array[0])
    _finite(probe, source, field)
    return probe.astype(np.complex64)


def _on_object_grid(probes: Any, pixel_w: float, pixel_h: float, source: str) -> Any:
    """The probe resampled onto the object pixel grid when its own pixel size differs
    (Ptychodus' ``resample_probe_sequence``; the probe array keeps its size)."""
    from ptychodus.api.probe import ProbeGeometry, resample_probe_sequence

    try:
        own = probes.get_pixel_geometry()
    except ValueError:
        return probes
    for name, value in (("width", own.width_m), ("height", own.height_m)):
        _positive_length(value, source, f"pixel_{name}_m", attribute_of="probe")
    if math.isclose(own.width_m, pixel_w, rel_tol=1e-6) and math.isclose(
        own.height_m, pixel_h, rel_tol=1e-6
    ):
        return probes
    logger.warning(
        "%s: probe pixel size %.4g x %.4g m differs from the object's %.4g x %.4g m; "
        "resampling the probe onto the object pixel grid",
        source,
        own.width_m,
        own.height_m,
        pixel_w,
        pixel_h,
    )
    target = ProbeGeometry(
        width_px=probes.width_px,
        height_px=probes.height_px,
        pixel_width_m=pixel_w,
        pixel_height_m=pixel_h,
    )
    return resample_probe_sequence(probes, target, rel_tol=1e-6)


def _check_patterns(
    patterns: np.ndarray, n_probe: int, source: str, field: str, probe_source: str
) -> None:
    """Patterns must be a non-empty (M, N, N) real stack with N the probe's size."""
    if patterns.dtype.kind not in "iuf":
        raise _error(source, field, "real-valued detector counts", f"dtype {patterns.dtype}")
    if patterns.ndim != 3 or patterns.shape[0] == 0:
        raise _error(
            source, field, "a non-empty (M, N, N) stack of patterns", f"shape {patterns.shape}"
        )
    if patterns.shape[1] != patterns.shape[2]:
        raise _error(source, field, "square (M, N, N) patterns", f"shape {patterns.shape}")
    if patterns.shape[1] != n_probe:
        raise _error(
            source,
            field,
            f"{n_probe}x{n_probe} patterns, the size of the probe in {probe_source}",
            f"{patterns.shape[1]}x{patterns.shape[2]}",
        )
    if patterns.dtype.kind == "f":
        _finite(patterns, source, field)
    if patterns.dtype.kind in "if" and patterns.size and patterns.min() < 0:
        raise _error(
            source,
            field,
            "non-negative counts",
            f"{int(np.count_nonzero(patterns < 0))} negative value(s), min {patterns.min():g}",
        )


def _repair(patterns: np.ndarray, bad_pixels: Any, mode: str, source: str) -> np.ndarray:
    """Fill the detector's bad pixels the way Ptychodus' PtychoPINN front-end does
    (biharmonic inpainting by default) so a model sees the same data either way."""
    from ptychodus.api.preprocess.diffraction import inpaint_bad_pixels, zero_bad_pixels

    if mode not in BAD_PIXEL_MODES:
        raise ConfigError(f"bad_pixels: expected one of {BAD_PIXEL_MODES}, found {mode!r}")
    if bad_pixels is None:
        return patterns
    mask = np.asarray(bad_pixels, dtype=bool)
    if mask.shape != patterns.shape[1:]:
        raise _error(
            source, "bad_pixels", f"a {patterns.shape[1:]} mask", f"shape {tuple(mask.shape)}"
        )
    n_bad = int(mask.sum())
    if not n_bad:
        return patterns
    logger.info("%s: %d bad detector pixel(s) filled (%s)", source, n_bad, mode)
    repair = inpaint_bad_pixels if mode == "inpaint" else zero_bad_pixels
    return repair(patterns, mask)


def _finish(
    patterns: np.ndarray,
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    probe: np.ndarray,
    obj: np.ndarray | None,
    *,
    source: str,
    diffraction_kind: str,
    allow_outside: bool,
    geometry: dict[str, Any],
) -> PtychoData:
    """Validate against the NPZ contract and attach the geometry for writing back."""
    data = from_arrays(
        patterns,
        xcoords,
        ycoords,
        probe,
        object=obj,
        diffraction_kind=diffraction_kind,
        source=source,
        allow_outside=allow_outside,
    )
    shift = data.metadata.get("coordinate_shift")
    if shift:  # positions moved onto the canvas: the metre origin moves with them
        geometry["origin_x_m"] -= shift[0] * geometry["pixel_width_m"]
        geometry["origin_y_m"] -= shift[1] * geometry["pixel_height_m"]
    # The full scan's pixel positions, so that a subset can be matched back to its indexes.
    geometry["position_x_px"] = np.array(data.xcoords, dtype=np.float64)
    geometry["position_y_px"] = np.array(data.ycoords, dtype=np.float64)
    data.metadata[GEOMETRY_KEY] = geometry
    return data


def _geometry(
    fmt: str,
    pixel_w: float,
    pixel_h: float,
    origin_x_m: float,
    origin_y_m: float,
    indexes: np.ndarray,
    product_metadata: dict[str, Any],
) -> dict[str, Any]:
    """The physical geometry of a scan: metres of object pixel (x, y) are
    ``origin + pixel_size * (x, y)`` (the pixel-centre convention of the NPZ contract)."""
    return {
        "format": fmt,
        "pixel_width_m": pixel_w,
        "pixel_height_m": pixel_h,
        "origin_x_m": origin_x_m,
        "origin_y_m": origin_y_m,
        "position_indexes": np.asarray(indexes, dtype=np.int64),
        "product_metadata": product_metadata,
    }


def _warn_far_field(
    source: str,
    pixel_w: float,
    n: int,
    detector_pixel_m: float | None,
    energy_eV: float,
    distance_m: float,
) -> None:
    """Warn when the object pixel size disagrees with lambda * z / (N * detector pixel)."""
    from ptychodus.api.constants import energy_eV_to_wavelength_m
    from ptychodus.api.geometry import ImageExtent, PixelGeometry
    from ptychodus.api.propagate import compute_far_field_pixel_geometry

    values = (detector_pixel_m or 0.0, energy_eV, distance_m)
    if not all(math.isfinite(v) and v > 0 for v in values):
        return
    expected = compute_far_field_pixel_geometry(
        PixelGeometry(width_m=detector_pixel_m, height_m=detector_pixel_m),
        ImageExtent(width_px=n, height_px=n),
        wavelength_m=energy_eV_to_wavelength_m(energy_eV),
        propagation_distance_m=distance_m,
    ).width_m
    if abs(expected - pixel_w) > _PIXEL_SIZE_WARN * pixel_w:
        logger.warning(
            "%s: the object pixel size %.4g m differs from the far-field pixel size "
            "%.4g m of the detector geometry (lambda * z / (N * detector pixel)); positions "
            "are converted with the object's",
            source,
            pixel_w,
            expected,
        )


# ---------------------------------------------------------------------------------------------
# Ptychodus product + diffraction files
# ---------------------------------------------------------------------------------------------


def _read_product(path: Path) -> Any:
    """Ptychodus' H5ProductFileIO().read, with its failures as one clear message."""
    from ptychodus.plugins.h5_product_file import H5ProductFileIO

    if not path.is_file():
        raise DataValidationError(
            f"{path}: expected an existing Ptychodus product file (product.h5), found "
            + ("a directory" if path.exists() else "no such file")
        )
    try:
        with h5py.File(path, "r") as h5:
            if "object" not in h5 and "patterns" in h5:
                raise DataValidationError(
                    f"{path}: expected a Ptychodus product file (product.h5: probe, object, "
                    "positions), found its diffraction file (field 'patterns'); pass the "
                    f"product file, the diffraction file is then found next to it"
                )
        return H5ProductFileIO().read(path)
    except DataValidationError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataValidationError(
            f"{path}: expected a Ptychodus product file (product.h5), found one Ptychodus' "
            f"reader refuses: {_reader_error(exc)}"
        ) from exc


def _read_diffraction(path: Path, product_path: Path) -> Any:
    """Ptychodus' load_diffraction_data (the reader of its diffraction.h5)."""
    from ptychodus.api.io import load_diffraction_data

    if not path.is_file():
        raise DataValidationError(
            f"{path}: expected the Ptychodus diffraction file of {product_path} (the "
            f"detector counts; give it with diffraction_path or put {DIFFRACTION_FILE_NAME} "
            "next to the product), found " + ("a directory" if path.exists() else "no such file")
        )
    try:
        return load_diffraction_data(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataValidationError(
            f"{path}: expected a Ptychodus diffraction file (diffraction.h5: patterns, "
            f"indexes, bad_pixels), found one Ptychodus' reader refuses: {_reader_error(exc)}"
        ) from exc


def _pair_by_index(
    pattern_indexes: np.ndarray,
    position_indexes: np.ndarray,
    diffraction_path: Path,
    product_path: Path,
) -> np.ndarray | None:
    """Order of the patterns that pairs them with the positions by scan index (None: the
    same order already). Ptychodus pairs patterns and positions by index; here the two
    index sets must be equal (Ptychodus would interpolate missing positions instead)."""
    n_pat, n_pos = len(pattern_indexes), len(position_indexes)
    if n_pat != n_pos:
        raise _error(
            diffraction_path,
            "patterns",
            f"one pattern per probe position ({n_pos} in {product_path}, field "
            "'probe_position_indexes')",
            f"{n_pat} pattern(s)",
        )
    if np.array_equal(pattern_indexes, position_indexes):
        return None
    if len(np.unique(pattern_indexes)) != n_pat:
        raise _error(diffraction_path, "indexes", "distinct scan indexes", "duplicates")
    if len(np.unique(position_indexes)) != n_pos:
        raise _error(product_path, "probe_position_indexes", "distinct scan indexes", "duplicates")
    order = np.argsort(pattern_indexes, kind="stable")
    located = np.searchsorted(pattern_indexes, position_indexes, sorter=order)
    located = np.clip(located, 0, n_pat - 1)
    take = order[located]
    missing = pattern_indexes[take] != position_indexes
    if missing.any():
        raise _error(
            diffraction_path,
            "indexes",
            f"the scan indexes of the positions in {product_path}",
            f"{int(missing.sum())} position index(es) without a pattern, first "
            f"{int(position_indexes[np.flatnonzero(missing)[0]])}",
        )
    return take


def load_product_scan(
    product_path: str | os.PathLike[str],
    diffraction_path: str | os.PathLike[str] | None = None,
    *,
    diffraction_kind: str = "counts",
    allow_outside: bool = False,
    bad_pixels: str = "inpaint",
) -> PtychoData:
    """Read a Ptychodus ``product.h5`` and its ``diffraction.h5`` as a contract scan.

    Positions (metres) become object pixel coordinates with Ptychodus' own mapping
    (``ObjectGeometry.map_probe_positions_to_object_x_px``: pixel centre ``(W-1)/2`` sits at
    the object's ``center_x_m``); the object (layer 0) defines the canvas; the probe is
    mode 0, resampled onto the object pixel grid if its pixel size differs; patterns are
    paired with positions by scan index, bad pixels filled (``"inpaint"``/``"zero"``) and
    the counts square-rooted. ``diffraction_path`` defaults to ``diffraction.h5`` next to
    the product.
    """
    product_path = Path(product_path)
    _require_ptychodus(str(product_path), "reading a Ptychodus product file")
    diffraction_path = (
        product_path.with_name(DIFFRACTION_FILE_NAME)
        if diffraction_path is None
        else Path(diffraction_path)
    )
    source = str(product_path)
    product = _read_product(product_path)
    assembled = _read_diffraction(diffraction_path, product_path)

    obj = product.object_
    pixel = obj.get_pixel_geometry()
    pixel_w = _positive_length(pixel.width_m, source, "pixel_width_m", attribute_of="object")
    pixel_h = _positive_length(pixel.height_m, source, "pixel_height_m", attribute_of="object")
    center = obj.get_center()
    for name, value in (("center_x_m", center.x_m), ("center_y_m", center.y_m)):
        if not math.isfinite(float(value)):
            raise _error(
                source, name, "a finite position in metres", repr(value), attribute_of="object"
            )
    if obj.height_px == 0 or obj.width_px == 0:
        raise _error(source, "object", "a non-empty (H, W) array", f"shape {obj.get_array().shape}")
    if obj.num_layers > 1:
        warnings.warn(
            f"{source}: field 'object': {obj.num_layers} layers found; using layer 0 (as "
            "Ptychodus' PtychoPINN front-end does)",
            UserWarning,
            stacklevel=2,
        )
    layer = np.asarray(obj.get_layer(0))
    _finite(layer, source, "object")

    positions = product.probe_positions
    if len(positions) == 0:
        raise _error(source, "probe_position_x_m", "at least one probe position", "none")
    _finite(np.asarray(positions.get_coordinates_x_m()), source, "probe_position_x_m")
    _finite(np.asarray(positions.get_coordinates_y_m()), source, "probe_position_y_m")
    geometry = obj.get_geometry()
    xcoords = np.asarray(geometry.map_probe_positions_to_object_x_px(positions), np.float64)
    ycoords = np.asarray(geometry.map_probe_positions_to_object_y_px(positions), np.float64)
    position_indexes = np.asarray(positions.get_indexes(), dtype=np.int64)

    probes = _on_object_grid(product.probes, pixel_w, pixel_h, source)
    probe = _probe_mode0(probes, source, "probe")
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise _error(source, "probe", "a square (N, N) probe", f"shape {probe.shape}")

    patterns = np.asarray(assembled.get_patterns())
    _check_patterns(patterns, probe.shape[0], str(diffraction_path), "patterns", source)
    take = _pair_by_index(
        np.asarray(assembled.get_indexes(), dtype=np.int64),
        position_indexes,
        diffraction_path,
        product_path,
    )
    if take is not None:
        patterns = patterns[take]
    patterns = _repair(patterns, assembled.get_bad_pixels(), bad_pixels, str(diffraction_path))

    meta = product.metadata
    detector_pixel = assembled.get_pixel_geometry().width_m
    _warn_far_field(
        source,
        pixel_w,
        probe.shape[0],
        detector_pixel,
        meta.photon_energy_eV,
        meta.detector_distance_m,
    )
    geometry_meta = _geometry(
        "ptychodus-product",
        pixel_w,
        pixel_h,
        float(center.x_m) - pixel_w * (obj.width_px - 1) / 2,
        float(center.y_m) - pixel_h * (obj.height_px - 1) / 2,
        position_indexes,
        _plain_metadata(meta),
    )
    data = _finish(
        patterns,
        xcoords,
        ycoords,
        probe,
        layer.astype(np.complex64),
        source=source,
        diffraction_kind=diffraction_kind,
        allow_outside=allow_outside,
        geometry=geometry_meta,
    )
    data.metadata["diffraction_file"] = str(diffraction_path)
    # A product's object is a starting guess or an earlier reconstruction, not a ground
    # truth: it sets the canvas, and nothing is scored against it (write_outputs).
    data.metadata[OBJECT_IS_TRUTH_KEY] = False
    logger.info(
        "%s: %d positions, %dx%d patterns from %s, object %dx%d px of %.4g x %.4g m",
        source,
        data.n_positions,
        data.N,
        data.N,
        diffraction_path,
        obj.width_px,
        obj.height_px,
        pixel_w,
        pixel_h,
    )
    return data


def _plain_metadata(meta: Any) -> dict[str, Any]:
    """ProductMetadata as plain values (picklable; the polarization enum as its value)."""
    fields = asdict(meta)
    if fields.get("polarization") is not None:
        fields["polarization"] = str(fields["polarization"].value)
    return fields


# ---------------------------------------------------------------------------------------------
# CXI files
# ---------------------------------------------------------------------------------------------

#: Where Ptychodus' cxi_file.py reads the positions and the probe (in this order).
_CXI_TRANSLATION = ("/entry_1/sample_1/geometry_1/translation", "/entry_1/data_1/translation")
_CXI_PROBE = ("/entry_1/image_1/data", "/entry_1/instrument_1/source_1/illumination")
_CXI_PROBE_PIXEL = (
    "/entry_1/ptychodus/probe_pixel_width_m",
    "/entry_1/ptychodus/probe_pixel_height_m",
)


def _cxi_dataset(h5: h5py.File, paths: tuple[str, ...]) -> tuple[str, np.ndarray] | None:
    for p in paths:
        item = h5.get(p)
        if isinstance(item, h5py.Dataset):
            return p, item[()]
    return None


def _cxi_probe_pixel(h5: h5py.File, probe_path: str, shape: tuple[int, ...]) -> Any:
    """The probe's own pixel size if the file records one (Ptychodus' extension fields,
    or ``image_1/image_size`` over the array size), else None."""
    from ptychodus.api.geometry import PixelGeometry

    found = [h5.get(p) for p in _CXI_PROBE_PIXEL]
    if all(isinstance(f, h5py.Dataset) for f in found):
        return PixelGeometry(width_m=float(found[0][()]), height_m=float(found[1][()]))
    size = h5.get("/entry_1/image_1/image_size")
    if probe_path.startswith("/entry_1/image_1/") and isinstance(size, h5py.Dataset):
        extent = np.asarray(size[()], dtype=float).ravel()
        if extent.size >= 2 and shape[-1] > 0 and shape[-2] > 0:
            return PixelGeometry(width_m=extent[0] / shape[-1], height_m=extent[1] / shape[-2])
    return None


def load_cxi_scan(
    path: str | os.PathLike[str],
    *,
    diffraction_kind: str = "counts",
    allow_outside: bool = False,
    bad_pixels: str = "inpaint",
) -> PtychoData:
    """Read a CXI file (data, instrument geometry, translations, probe) as a contract scan.

    The detector data and geometry are read with Ptychodus' ``CXIDiffractionFileReader``;
    the object pixel size is Ptychodus' far-field relation
    ``lambda * distance / (N * detector pixel)`` (``ProbeGeometry.from_far_field``, with
    ``lambda`` from ``source_1/energy`` in joules); translations (metres, x then y, read as
    Ptychodus reads them: as probe positions) become object pixels with the lowest position
    at ``(N-1)/2``, so every patch fits on a canvas just large enough for the scan (there is
    no object). The probe (mode 0) is required.
    """
    path = Path(path)
    source = str(path)
    _require_ptychodus(source, "reading a CXI file")
    from ptychodus.api.constants import energy_eV_to_wavelength_m
    from ptychodus.api.geometry import ImageExtent
    from ptychodus.api.probe import ProbeGeometry, ProbeSequence
    from ptychodus.plugins.cxi_file import CXIDiffractionFileReader

    if not path.is_file():
        raise DataValidationError(
            f"{path}: expected an existing CXI file, found "
            + ("a directory" if path.exists() else "no such file")
        )
    try:
        dataset = CXIDiffractionFileReader().read(path)
        patterns = np.concatenate([np.asarray(a.get_patterns()) for a in dataset])
        with h5py.File(path, "r") as h5:
            translation = _cxi_dataset(h5, _CXI_TRANSLATION)
            probe_found = _cxi_dataset(h5, _CXI_PROBE)
            probe_pixel = (
                None
                if probe_found is None
                else _cxi_probe_pixel(h5, probe_found[0], probe_found[1].shape)
            )
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataValidationError(
            f"{path}: expected a CXI file (entry_1/data_1/data, entry_1/instrument_1/...), "
            f"found one that cannot be read: {_reader_error(exc)}"
        ) from exc
    meta = dataset.get_metadata()

    if translation is None:
        raise _error(source, _CXI_TRANSLATION[0], "the (M, 3) probe positions in metres", "none")
    t_path, t = translation
    t = np.asarray(t)
    if t.ndim != 2 or t.shape[1] < 2 or t.dtype.kind not in "iuf":
        raise _error(source, t_path, "a real (M, 2 or 3) array in metres", f"shape {t.shape}")
    _finite(t, source, t_path)
    if probe_found is None:
        raise _error(
            source,
            _CXI_PROBE[0],
            f"a probe (or {_CXI_PROBE[1]}); this reader needs the illumination",
            "none",
        )
    p_path, p_array = probe_found
    p_array = np.asarray(p_array)
    if not np.iscomplexobj(p_array) and p_array.dtype.kind in "iuf":
        p_array = p_array.astype(np.complex64)
    if not np.iscomplexobj(p_array) or not 2 <= p_array.ndim <= 4:
        raise _error(
            source,
            p_path,
            "a complex (N, N) probe (or a mode stack)",
            f"{p_array.dtype}{p_array.shape}",
        )
    n = p_array.shape[-1]
    _check_patterns(patterns, n, source, "entry_1/data_1/data", source)
    if p_array.shape[-2] != n:
        raise _error(source, p_path, "a square (N, N) probe", f"shape {p_array.shape}")
    if len(t) != patterns.shape[0]:
        raise _error(
            source,
            t_path,
            f"one position per diffraction pattern ({patterns.shape[0]} in entry_1/data_1/data)",
            f"{len(t)} position(s)",
        )

    # Object pixel size from the detector geometry, as Ptychodus computes it.
    det = meta.detector_pixel_geometry
    fields = {
        "entry_1/instrument_1/source_1/energy": meta.photon_energy_eV,
        "entry_1/instrument_1/detector_1/distance": meta.detector_distance_m,
        "entry_1/instrument_1/detector_1/x_pixel_size": None if det is None else det.width_m,
        "entry_1/instrument_1/detector_1/y_pixel_size": None if det is None else det.height_m,
    }
    missing = [k for k, v in fields.items() if v is None]
    if missing and probe_pixel is None:
        raise _error(
            source,
            missing[0],
            "the detector geometry (source energy, detector distance and pixel size) that "
            "fixes the object pixel size",
            "no such field",
        )
    if not missing:
        for k, v in fields.items():
            unit = "eV (converted from the file's joules)" if k.endswith("energy") else "metres"
            _positive_length(v, source, k, unit=unit)
        pixel = ProbeGeometry.from_far_field(
            det,
            ImageExtent(width_px=n, height_px=n),
            wavelength_m=energy_eV_to_wavelength_m(meta.photon_energy_eV),
            distance_m=meta.detector_distance_m,
        ).get_pixel_geometry()
    else:
        logger.info("%s: no %s; using the probe's recorded pixel size", source, ", ".join(missing))
        pixel = probe_pixel
    pixel_w = _positive_length(pixel.width_m, source, "object pixel width (derived)")
    pixel_h = _positive_length(pixel.height_m, source, "object pixel height (derived)")

    # A probe without a recorded pixel size is taken to be on the object grid.
    probes = ProbeSequence(array=p_array, opr_weights=None, pixel_geometry=probe_pixel or pixel)
    probes = _on_object_grid(probes, pixel_w, pixel_h, source)
    probe = _probe_mode0(probes, source, p_path)
    patterns = _repair(patterns, dataset.get_bad_pixels(), bad_pixels, source)

    half = (n - 1) / 2
    x_m, y_m = t[:, 0].astype(np.float64), t[:, 1].astype(np.float64)
    origin_x, origin_y = float(x_m.min()) - half * pixel_w, float(y_m.min()) - half * pixel_h
    xcoords, ycoords = (x_m - origin_x) / pixel_w, (y_m - origin_y) / pixel_h
    product_metadata = {
        "name": path.stem,
        "comments": f"read from {path.name} by ptychopinn",
        "detector_distance_m": float(meta.detector_distance_m or 0.0),
        "photon_energy_eV": float(meta.photon_energy_eV or 0.0),
        "probe_photon_count": float(meta.probe_photon_count or 0.0),
        "exposure_time_s": float(meta.exposure_time_s or 0.0),
        "mass_attenuation_m2_per_kg": 0.0,
        "tomography_angle_deg": float(meta.tomography_angle_deg or 0.0),
    }
    geometry = _geometry(
        "cxi",
        pixel_w,
        pixel_h,
        origin_x,
        origin_y,
        np.arange(len(t)),
        product_metadata,
    )
    data = _finish(
        patterns,
        xcoords,
        ycoords,
        probe,
        None,
        source=source,
        diffraction_kind=diffraction_kind,
        allow_outside=allow_outside,
        geometry=geometry,
    )
    logger.info(
        "%s: %d positions, %dx%d patterns, object pixel %.4g x %.4g m",
        source,
        data.n_positions,
        n,
        n,
        pixel_w,
        pixel_h,
    )
    return data


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


def load_scan(
    path: str | os.PathLike[str],
    *,
    diffraction_path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> PtychoData:
    """Read a scan by its file type: ``.npz`` (:func:`~ptychopinn.data.npz.load_npz`, with
    ``kwargs``), ``.h5``/``.hdf5`` (a Ptychodus product, :func:`load_product_scan`) or
    ``.cxi`` (:func:`load_cxi_scan`). ``diffraction_path`` is for product files only;
    ``validate`` applies to NPZ files only (the others are always validated)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if diffraction_path is not None and suffix not in PRODUCT_SUFFIXES:
        raise ConfigError(
            f"{path}: diffraction_path is for Ptychodus product files "
            f"({', '.join(PRODUCT_SUFFIXES)}) only"
        )
    if suffix == ".npz":
        return load_npz(path, **kwargs)
    kwargs.pop("validate", None)
    if suffix in PRODUCT_SUFFIXES:
        return load_product_scan(path, diffraction_path, **kwargs)
    if suffix == ".cxi":
        return load_cxi_scan(path, **kwargs)
    raise DataValidationError(
        f"{path}: expected a scan file of a known type (.npz: NPZ contract; .h5/.hdf5: "
        f"Ptychodus product with {DIFFRACTION_FILE_NAME} beside it; .cxi: CXI), found "
        f"extension {path.suffix or '(none)'!r}"
    )


# ---------------------------------------------------------------------------------------------
# Writing a Ptychodus product
# ---------------------------------------------------------------------------------------------


def _position_indexes(
    geometry: Mapping[str, Any] | None, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Scan indexes of the reconstructed positions: those of the file the scan came from
    (matched by pixel position, so a subset keeps its indexes), else 0..M-1."""
    fallback = np.arange(len(x), dtype=np.int64)
    if not geometry or geometry.get("position_indexes") is None:
        return fallback
    idx = np.asarray(geometry["position_indexes"])
    gx, gy = geometry.get("position_x_px"), geometry.get("position_y_px")
    if gx is None or gy is None:
        return idx if len(idx) == len(x) else fallback
    if len(gx) == len(x) and np.array_equal(gx, x) and np.array_equal(gy, y):
        return idx
    lookup: dict[tuple[float, float], list[int]] = {}
    for i, key in enumerate(zip(gx.tolist(), gy.tolist(), strict=True)):
        lookup.setdefault(key, []).append(i)
    out = np.empty(len(x), dtype=np.int64)
    for k, key in enumerate(zip(np.asarray(x).tolist(), np.asarray(y).tolist(), strict=True)):
        rows = lookup.get(key)
        if not rows:
            logger.warning(
                "reconstructed positions do not match the input scan's; writing scan indexes 0..%d",
                len(x) - 1,
            )
            return fallback
        out[k] = idx[rows.pop(0) if len(rows) > 1 else rows[0]]
    return out


def save_product(
    path: str | os.PathLike[str],
    reconstruction: Reconstruction,
    data: PtychoData,
    *,
    pixel_size_m: float | None = None,
    name: str | None = None,
    comments: str | None = None,
    photon_energy_eV: float | None = None,
    detector_distance_m: float | None = None,
) -> Path:
    """Write ``reconstruction`` as a Ptychodus ``product.h5`` (atomically); return the path.

    Written with Ptychodus' ``H5ProductFileIO().write``: the complex object on its canvas,
    the probe used (mode 0, on the object pixel grid) and the positions back in metres with
    their original scan indexes, so Ptychodus pairs them with the same patterns. A scan read
    from a product or CXI file keeps its pixel sizes, metre origin and metadata (energy,
    detector distance, name); a scan without units (NPZ) is written with square pixels of
    ``pixel_size_m`` metres (default 1, so metres read as object pixels), pixel (0, 0) at
    the origin, energy and distance ``photon_energy_eV``/``detector_distance_m`` (default 0:
    unknown).
    """
    path = Path(path)
    _require_ptychodus(str(path), "writing a Ptychodus product file")
    from ptychodus.api.diffraction import Polarization
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
    from ptychodus.api.product import Product, ProductMetadata
    from ptychodus.plugins.h5_product_file import H5ProductFileIO

    geometry = data.metadata.get(GEOMETRY_KEY)
    obj = np.asarray(reconstruction.object)
    if obj.ndim != 2 or not obj.size:
        raise DataValidationError(
            f"{path}: expected a reconstructed (H, W) object, found shape {obj.shape}"
        )
    x_px = np.asarray(reconstruction.xcoords, dtype=np.float64)
    y_px = np.asarray(reconstruction.ycoords, dtype=np.float64)
    if geometry:
        pixel_w, pixel_h = geometry["pixel_width_m"], geometry["pixel_height_m"]
        origin_x, origin_y = geometry["origin_x_m"], geometry["origin_y_m"]
        fields = dict(geometry["product_metadata"])
    else:
        size = 1.0 if pixel_size_m is None else float(pixel_size_m)
        if not math.isfinite(size) or size <= 0:
            raise ConfigError(f"pixel_size_m: expected a finite length > 0, found {size!r}")
        pixel_w = pixel_h = size
        origin_x = origin_y = 0.0
        fields = {
            "name": Path(data.source).stem or "ptychopinn",
            "comments": "",
            "detector_distance_m": 0.0,
            "photon_energy_eV": 0.0,
            "probe_photon_count": 0.0,
            "exposure_time_s": 0.0,
            "mass_attenuation_m2_per_kg": 0.0,
            "tomography_angle_deg": 0.0,
        }
    fields["comments"] = (
        comments
        if comments is not None
        else "; ".join(
            s for s in (fields.get("comments"), f"PtychoPINN reconstruction of {data.source}") if s
        )
    )
    for key, value in (
        ("name", name),
        ("photon_energy_eV", photon_energy_eV),
        ("detector_distance_m", detector_distance_m),
    ):
        if value is not None:
            fields[key] = value
    if fields.get("polarization") is not None:
        fields["polarization"] = Polarization(fields["polarization"])
    h, w = obj.shape
    pixels = PixelGeometry(width_m=float(pixel_w), height_m=float(pixel_h))
    indexes = _position_indexes(geometry, x_px, y_px)
    points = [
        ProbePosition(int(i), float(origin_x + pixel_w * x), float(origin_y + pixel_h * y))
        for i, x, y in zip(indexes, x_px, y_px, strict=True)
    ]
    product = Product(
        metadata=ProductMetadata(**fields),
        probe_positions=ProbePositionSequence(points),
        probes=ProbeSequence(np.asarray(data.probe, dtype=np.complex64), None, pixels),
        object_=Object(
            array=obj.astype(np.complex64),
            pixel_geometry=pixels,
            center=ObjectCenter(
                x_m=float(origin_x + pixel_w * (w - 1) / 2),
                y_m=float(origin_y + pixel_h * (h - 1) / 2),
            ),
        ),
        losses=[],
    )
    atomic_write(path, lambda tmp: H5ProductFileIO().write(tmp, product))
    logger.info("wrote %s (Ptychodus product, %d positions)", path, len(points))
    return path
