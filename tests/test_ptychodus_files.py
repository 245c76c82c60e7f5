"""Ptychodus product/diffraction files and CXI files in and out, against Ptychodus 1.7.0.

Every file read here is written by Ptychodus' own writers (``H5ProductFileIO``,
``save_diffraction_data``, ``CXIDiffractionFileWriter``, ``CXIProductFileIO``) from a scan
simulated by this project, and every file written here is read back by Ptychodus' own
readers; metres <-> pixels go through Ptychodus' ``ObjectGeometry``. Small scans (N=32,
81 positions); the CLI test trains a 1-epoch model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip(
    "ptychodus", reason="ptychodus is not installed (pip install 'ptychopinn[ptychodus]')"
)

from ptychodus.api.assemble import AssembledDiffractionData
from ptychodus.api.constants import energy_eV_to_wavelength_m
from ptychodus.api.diffraction import (
    DiffractionDatasetLayoutNode,
    DiffractionMetadata,
    SimpleDiffractionArray,
    SimpleDiffractionDataset,
)
from ptychodus.api.geometry import ImageExtent, PixelGeometry
from ptychodus.api.io import (
    load_diffraction_data,
    save_diffraction_data,
    save_ptychopinn_training_data,
)
from ptychodus.api.object import Object, ObjectCenter, ObjectPosition
from ptychodus.api.preprocess.diffraction import inpaint_bad_pixels
from ptychodus.api.probe import ProbeGeometry, ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductMetadata
from ptychodus.api.reconstruct import prepare_reconstruct_input
from ptychodus.plugins.cxi_file import (
    CXIDiffractionFileReader,
    CXIDiffractionFileWriter,
    CXIProductFileIO,
)
from ptychodus.plugins.h5_product_file import H5ProductFileIO

from ptychopinn.cli import inference as inference_cli
from ptychopinn.cli import train as train_cli
from ptychopinn.data.npz import load_npz
from ptychopinn.data.ptychodus_files import (
    GEOMETRY_KEY,
    load_cxi_scan,
    load_scan,
    save_product,
)
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.errors import ConfigError, DataValidationError
from ptychopinn.workflows.infer import Reconstruction
from train_flags import fast_train

N = 32
ENERGY_EV = 8_000.0
DISTANCE_M = 1.5
DETECTOR_PIXEL_M = 75e-6
OBJECT_PIXEL_M = energy_eV_to_wavelength_m(ENERGY_EV) * DISTANCE_M / (N * DETECTOR_PIXEL_M)
CENTER_M = (3.0e-6, -1.5e-6)  # an object centre off the origin
INDEX_OFFSET = 100  # scan indexes that are not row numbers
FAST_TRAIN = fast_train(1)


@pytest.fixture(scope="module")
def scan():
    return simulate_dataset(N=32, object_size=80, step=6, nphotons=1e5, seed=1)


def _counts(scan) -> np.ndarray:
    """Raw detector counts, as Ptychodus stores them."""
    return np.rint(np.square(scan.diffraction, dtype=np.float64)).astype(np.uint32)


def _pixels(size: float = OBJECT_PIXEL_M) -> PixelGeometry:
    return PixelGeometry(width_m=size, height_m=size)


def _metadata() -> ProductMetadata:
    return ProductMetadata(
        name="simulated",
        comments="ptychopinn test",
        detector_distance_m=DISTANCE_M,
        photon_energy_eV=ENERGY_EV,
        probe_photon_count=1e5,
        exposure_time_s=1.0,
        mass_attenuation_m2_per_kg=0.0,
        tomography_angle_deg=0.0,
    )


def _product(scan, *, probe=None, pixel: float = OBJECT_PIXEL_M, x_nan: bool = False):
    """A Ptychodus product of ``scan``: positions in metres via Ptychodus' ObjectGeometry.

    ``pixel`` is the object pixel size stored in the file (the metres always use the true
    one, so that a bad stored value is the only fault); ``x_nan`` spoils one position."""
    center = ObjectCenter(x_m=CENTER_M[0], y_m=CENTER_M[1])
    obj = Object(
        array=scan.object.astype(np.complex64), pixel_geometry=_pixels(pixel), center=center
    )
    geometry = Object(array=obj.get_array(), pixel_geometry=_pixels(), center=center).get_geometry()
    points = []
    for i, (x, y) in enumerate(zip(scan.xcoords, scan.ycoords, strict=True)):
        p = geometry.map_coordinates_object_to_probe(ObjectPosition(i + INDEX_OFFSET, x, y))
        points.append(ProbePosition(p.index, np.nan if x_nan and i == 3 else p.x_m, p.y_m))
    return Product(
        metadata=_metadata(),
        probe_positions=ProbePositionSequence(points),
        probes=ProbeSequence(scan.probe if probe is None else probe, None, _pixels()),
        object_=obj,
        losses=[],
    )


def _write_ptychodus(
    directory: Path,
    scan,
    *,
    patterns=None,
    reverse: bool = False,
    bad_pixels=None,
    **product_kw,
) -> Path:
    """``product.h5`` + ``diffraction.h5`` written by Ptychodus; returns the product path.

    ``reverse`` stores the patterns in reverse scan order (pairing is by scan index)."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = _counts(scan) if patterns is None else patterns
    indexes = np.arange(len(counts)) + INDEX_OFFSET
    if reverse:
        counts, indexes = counts[::-1].copy(), indexes[::-1].copy()
    mask = np.zeros(counts.shape[1:], dtype=bool) if bad_pixels is None else bad_pixels
    save_diffraction_data(
        directory / "diffraction.h5",
        AssembledDiffractionData(indexes, counts, _pixels(DETECTOR_PIXEL_M), mask),
    )
    path = directory / "product.h5"
    H5ProductFileIO().write(path, _product(scan, **product_kw))
    return path


# ---------------------------------------------------------------------------------------------
# Reading a Ptychodus product
# ---------------------------------------------------------------------------------------------


def test_product_reads_as_the_simulated_scan(tmp_path, scan):
    path = _write_ptychodus(tmp_path, scan, reverse=True)
    data = load_scan(path)
    np.testing.assert_allclose(data.xcoords, scan.xcoords, rtol=0, atol=1e-9)
    np.testing.assert_allclose(data.ycoords, scan.ycoords, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(data.probe, scan.probe)
    np.testing.assert_array_equal(data.object, scan.object)
    np.testing.assert_allclose(data.diffraction, np.sqrt(_counts(scan)), rtol=1e-6)
    geometry = data.metadata[GEOMETRY_KEY]
    assert geometry["pixel_width_m"] == pytest.approx(OBJECT_PIXEL_M, rel=1e-12)
    np.testing.assert_array_equal(
        geometry["position_indexes"], np.arange(scan.n_positions) + INDEX_OFFSET
    )


def test_product_agrees_with_ptychodus_own_ptychopinn_export(tmp_path, scan):
    """What Ptychodus hands its PtychoPINN front-end (pairing, positions, counts)."""
    path = _write_ptychodus(tmp_path, scan, reverse=True)
    exported = tmp_path / "export.npz"
    reconstruct_input = prepare_reconstruct_input(
        load_diffraction_data(tmp_path / "diffraction.h5"), H5ProductFileIO().read(path)
    )
    save_ptychopinn_training_data(exported, reconstruct_input)
    theirs, ours = load_npz(exported, diffraction_kind="counts"), load_scan(path)
    # Ptychodus keeps the file order of the patterns (stored reversed here), ours the
    # order of the positions: the same pairs, in opposite orders.
    np.testing.assert_allclose(ours.xcoords, theirs.xcoords[::-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.ycoords, theirs.ycoords[::-1], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours.diffraction, theirs.diffraction[::-1])
    np.testing.assert_array_equal(ours.probe, theirs.probe)


def test_product_probe_modes_and_bad_pixels(tmp_path, scan):
    modes = np.stack([scan.probe, 0.1 * np.roll(scan.probe, 3, axis=-1)]).astype(np.complex64)
    mask = np.zeros((N, N), dtype=bool)
    mask[3, 5] = mask[20, 7] = True
    path = _write_ptychodus(tmp_path, scan, probe=modes, bad_pixels=mask)
    with pytest.warns(UserWarning, match="mode 0"):
        data = load_scan(path)
    np.testing.assert_array_equal(data.probe, scan.probe)
    repaired = inpaint_bad_pixels(_counts(scan), mask)  # as Ptychodus' front-end does
    np.testing.assert_allclose(data.diffraction, np.sqrt(repaired), rtol=1e-6)


def test_product_probe_on_another_pixel_grid_is_resampled(tmp_path, scan):
    product = _product(scan)
    coarse = ProbeSequence(scan.probe, None, _pixels(2 * OBJECT_PIXEL_M))
    product = Product(
        product.metadata, product.probe_positions, coarse, product.object_, product.losses
    )
    path = _write_ptychodus(tmp_path, scan)
    H5ProductFileIO().write(path, product)
    data = load_scan(path)
    from ptychodus.api.probe import resample_probe_sequence

    expected = resample_probe_sequence(coarse, ProbeGeometry(N, N, OBJECT_PIXEL_M, OBJECT_PIXEL_M))
    np.testing.assert_allclose(data.probe, expected.get_array()[0, 0], rtol=1e-5, atol=1e-6)


def test_explicit_diffraction_path(tmp_path, scan):
    path = _write_ptychodus(tmp_path / "a", scan)
    moved = tmp_path / "scan_diffraction.h5"
    (tmp_path / "a" / "diffraction.h5").rename(moved)
    data = load_scan(path, diffraction_path=moved)
    assert data.n_positions == scan.n_positions and data.metadata["diffraction_file"] == str(moved)


# ---------------------------------------------------------------------------------------------
# CXI
# ---------------------------------------------------------------------------------------------


def _write_cxi(path: Path, scan) -> Path:
    """One CXI file holding data, instrument, translations and probe: Ptychodus' CXI
    diffraction writer and CXI product writer, the product's groups merged into the first."""
    counts = _counts(scan)
    metadata = DiffractionMetadata(
        num_patterns_per_array=[len(counts)],
        pattern_dtype=counts.dtype,
        detector_extent=ImageExtent(width_px=N, height_px=N),
        detector_distance_m=DISTANCE_M,
        detector_pixel_geometry=_pixels(DETECTOR_PIXEL_M),
        photon_energy_eV=ENERGY_EV,
    )
    dataset = SimpleDiffractionDataset(
        metadata,
        DiffractionDatasetLayoutNode.create_root(),
        [SimpleDiffractionArray("scan", np.arange(len(counts)), counts)],
    )
    CXIDiffractionFileWriter().write(path, dataset)
    product_path = path.with_name(path.stem + "_product.cxi")
    CXIProductFileIO().write(product_path, _product(scan))
    with h5py.File(path, "a") as dst, h5py.File(product_path, "r") as src:
        for name in ("sample_1", "image_1", "image_2", "ptychodus"):
            src.copy(src["entry_1"][name], dst["entry_1"], name=name)
        dst["entry_1/data_1/translation"] = h5py.SoftLink(
            "/entry_1/sample_1/geometry_1/translation"
        )
        dst["entry_1/instrument_1/source_1/illumination"] = h5py.SoftLink("/entry_1/image_1/data")
    return path


def test_cxi_agrees_with_ptychodus_readers(tmp_path, scan):
    path = _write_cxi(tmp_path / "scan.cxi", scan)
    data = load_scan(path)
    diffraction = CXIDiffractionFileReader().read(path)
    product = CXIProductFileIO().read(path)  # the merged file also holds an object
    meta = diffraction.get_metadata()
    pixel = ProbeGeometry.from_far_field(
        meta.detector_pixel_geometry,
        ImageExtent(N, N),
        wavelength_m=energy_eV_to_wavelength_m(meta.photon_energy_eV),
        distance_m=meta.detector_distance_m,
    ).pixel_width_m
    assert data.metadata[GEOMETRY_KEY]["pixel_width_m"] == pytest.approx(pixel, rel=1e-12)
    assert pixel == pytest.approx(OBJECT_PIXEL_M, rel=1e-12)
    np.testing.assert_allclose(
        data.diffraction, np.sqrt(np.concatenate([a.get_patterns() for a in diffraction]))
    )
    np.testing.assert_array_equal(data.probe, product.probes.get_probe_no_opr().get_array()[0])
    # Ptychodus' positions in metres, in our pixels: a pure shift of the simulated ones
    # (the CXI canvas starts at the scan, not at the simulated object's corner).
    x_m = np.asarray(product.probe_positions.get_coordinates_x_m())
    np.testing.assert_allclose(data.xcoords, (x_m - x_m.min()) / pixel + (N - 1) / 2, atol=1e-9)
    for ours, truth in ((data.xcoords, scan.xcoords), (data.ycoords, scan.ycoords)):
        offset = ours - truth
        assert np.ptp(offset) < 1e-9
    assert data.object is None and data.canvas_shape()[0] >= np.ceil(data.ycoords.max() + N / 2)


def test_cxi_round_trip_to_a_product_keeps_metres(tmp_path, scan):
    path = _write_cxi(tmp_path / "scan.cxi", scan)
    data = load_cxi_scan(path)
    rec = _reconstruction(np.ones(data.canvas_shape(), np.complex64), data)
    written = H5ProductFileIO().read(save_product(tmp_path / "out.h5", rec, data))
    original = CXIProductFileIO().read(path).probe_positions
    np.testing.assert_allclose(
        written.probe_positions.get_coordinates_x_m(), original.get_coordinates_x_m(), atol=1e-15
    )
    np.testing.assert_allclose(
        written.probe_positions.get_coordinates_y_m(), original.get_coordinates_y_m(), atol=1e-15
    )
    assert written.metadata.photon_energy_eV == pytest.approx(ENERGY_EV)
    assert written.metadata.detector_distance_m == pytest.approx(DISTANCE_M)


def test_cxi_without_probe_is_refused(tmp_path, scan):
    path = _write_cxi(tmp_path / "scan.cxi", scan)
    with h5py.File(path, "a") as h5:
        del h5["entry_1/image_1"], h5["entry_1/instrument_1/source_1/illumination"]
    with pytest.raises(DataValidationError, match=r"scan\.cxi: field '/entry_1/image_1/data'"):
        load_scan(path)


# ---------------------------------------------------------------------------------------------
# Writing a Ptychodus product
# ---------------------------------------------------------------------------------------------


def _reconstruction(obj: np.ndarray, data) -> Reconstruction:
    return Reconstruction(
        object=obj,
        weights=np.ones(obj.shape, np.float32),
        xcoords=np.array(data.xcoords),
        ycoords=np.array(data.ycoords),
    )


def test_save_product_is_read_back_by_ptychodus(tmp_path, scan):
    data = load_scan(_write_ptychodus(tmp_path / "in", scan))
    obj = (0.8 * data.object * np.exp(0.3j)).astype(np.complex64)
    out = save_product(tmp_path / "out" / "product.h5", _reconstruction(obj, data), data)
    product = H5ProductFileIO().read(out)
    np.testing.assert_array_equal(product.object_.get_layer(0), obj)
    geometry = product.object_.get_geometry()
    assert (geometry.pixel_width_m, geometry.pixel_height_m) == (OBJECT_PIXEL_M, OBJECT_PIXEL_M)
    assert geometry.center_x_m == pytest.approx(CENTER_M[0], abs=1e-18)
    assert geometry.center_y_m == pytest.approx(CENTER_M[1], abs=1e-18)
    original = _product(scan).probe_positions
    positions = product.probe_positions
    np.testing.assert_array_equal(positions.get_indexes(), original.get_indexes())
    np.testing.assert_allclose(
        positions.get_coordinates_x_m(), original.get_coordinates_x_m(), atol=1e-15
    )
    np.testing.assert_allclose(
        geometry.map_probe_positions_to_object_x_px(positions), data.xcoords, atol=1e-9
    )
    np.testing.assert_allclose(
        geometry.map_probe_positions_to_object_y_px(positions), data.ycoords, atol=1e-9
    )
    np.testing.assert_array_equal(product.probes.get_probe_no_opr().get_array()[0], data.probe)
    assert product.probes.get_pixel_geometry() == _pixels()
    assert product.metadata.photon_energy_eV == ENERGY_EV
    assert product.metadata.detector_distance_m == DISTANCE_M
    assert product.metadata.name == "simulated"
    assert not [p for p in out.parent.iterdir() if p != out]  # atomic: no temporaries left


def test_save_product_of_a_subset_keeps_scan_indexes(tmp_path, scan):
    data = load_scan(_write_ptychodus(tmp_path / "in", scan))
    keep = np.array([40, 2, 17])
    part = data.subset(keep)
    out = save_product(tmp_path / "part.h5", _reconstruction(data.object, part), part)
    indexes = H5ProductFileIO().read(out).probe_positions.get_indexes()
    np.testing.assert_array_equal(indexes, keep + INDEX_OFFSET)


def test_save_product_of_an_npz_scan_uses_pixel_units(tmp_path, scan):
    out = save_product(tmp_path / "npz.h5", _reconstruction(scan.object, scan), scan)
    product = H5ProductFileIO().read(out)
    geometry = product.object_.get_geometry()
    h, w = scan.object.shape
    assert (geometry.pixel_width_m, geometry.pixel_height_m) == (1.0, 1.0)
    assert (geometry.center_x_m, geometry.center_y_m) == ((w - 1) / 2, (h - 1) / 2)
    np.testing.assert_allclose(product.probe_positions.get_coordinates_x_m(), scan.xcoords)
    np.testing.assert_allclose(
        geometry.map_probe_positions_to_object_y_px(product.probe_positions), scan.ycoords
    )
    np.testing.assert_array_equal(
        product.probe_positions.get_indexes(), np.arange(scan.n_positions)
    )


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, scan) -> Path:
    """A product scan and a 1-epoch model trained on it through ptycho_train."""
    d = tmp_path_factory.mktemp("ptychodus_cli")
    product = _write_ptychodus(d / "scan", scan)
    code = train_cli.main(
        ["--train_data_file", str(product), "--output_dir", str(d / "model"), *FAST_TRAIN]
    )
    assert code == 0
    return d


def test_inference_on_a_product_writes_a_ptychodus_product(trained, capsys):
    out = trained / "infer"
    code = inference_cli.main(
        [
            "--model_path",
            str(trained / "model"),
            "--test_data",
            str(trained / "scan" / "product.h5"),
            "--output_dir",
            str(out),
            "--torch-accelerator",
            "cpu",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ptychodus_product"] == str(out / "reconstruction_product.h5")
    # the product's object is a guess, not a ground truth: nothing is scored against it
    assert "metrics" not in summary and not (out / "metrics.json").exists()
    assert (out / "reconstructed_amplitude.png").is_file()
    product = H5ProductFileIO().read(out / "reconstruction_product.h5")
    source = H5ProductFileIO().read(trained / "scan" / "product.h5")
    with np.load(out / "reconstruction.npz") as z:
        np.testing.assert_array_equal(product.object_.get_layer(0), z["object"])
    assert product.object_.get_geometry() == source.object_.get_geometry()
    np.testing.assert_array_equal(
        product.probe_positions.get_indexes(), source.probe_positions.get_indexes()
    )
    np.testing.assert_allclose(
        product.probe_positions.get_coordinates_x_m(),
        source.probe_positions.get_coordinates_x_m(),
        atol=1e-15,
    )
    # What Ptychodus' batch reconstruct does with it: pair it with the diffraction file.
    refine_input = prepare_reconstruct_input(
        load_diffraction_data(trained / "scan" / "diffraction.h5"), product
    )
    assert refine_input.diffraction_patterns.shape == (summary["positions"], N, N)


def _bad_input(tmp_path: Path, scan, problem: str) -> tuple[Path, str]:
    """A broken input for ``problem`` and a fragment its error message must hold."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if problem == "missing_diffraction":
        path = _write_ptychodus(tmp_path, scan)
        (tmp_path / "diffraction.h5").unlink()
        return path, "diffraction.h5: expected the Ptychodus diffraction file"
    if problem == "pattern_count":
        return _write_ptychodus(tmp_path, scan, patterns=_counts(scan)[:-1]), "field 'patterns'"
    if problem == "pattern_size":
        small = np.ascontiguousarray(_counts(scan)[:, 1:-1, 1:-1])
        return _write_ptychodus(tmp_path, scan, patterns=small), "32x32 patterns"
    if problem == "pixel_size":
        return _write_ptychodus(tmp_path, scan, pixel=0.0), "attribute 'pixel_width_m' of 'object'"
    if problem == "nan_position":
        return _write_ptychodus(tmp_path, scan, x_nan=True), "field 'probe_position_x_m'"
    if problem == "not_a_product":
        _write_ptychodus(tmp_path, scan)
        return tmp_path / "diffraction.h5", "found its diffraction file"
    if problem == "not_hdf5":
        path = tmp_path / "product.h5"
        path.write_text("not hdf5")
        return path, "expected a Ptychodus product file"
    path = tmp_path / "scan.txt"
    path.write_text("x")
    return path, "extension '.txt'"


@pytest.mark.parametrize(
    "problem",
    [
        "missing_diffraction",
        "pattern_count",
        "pattern_size",
        "pixel_size",
        "nan_position",
        "not_a_product",
        "not_hdf5",
        "extension",
    ],
)
def test_bad_inputs_give_one_line_errors(tmp_path, scan, capsys, problem):
    path, expected = _bad_input(tmp_path / "in", scan, problem)
    code = train_cli.main(
        ["--train_data_file", str(path), "--output_dir", str(tmp_path / "out"), *FAST_TRAIN]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1
    assert str(path) in err and expected in err, err


def test_pattern_count_message_names_both_files(tmp_path, scan):
    path = _write_ptychodus(tmp_path, scan, patterns=_counts(scan)[:-1])
    with pytest.raises(DataValidationError) as exc:
        load_scan(path)
    message = str(exc.value)
    assert "diffraction.h5" in message and str(path) in message
    assert f"{scan.n_positions - 1} pattern(s)" in message


def test_missing_extra_is_one_config_error(tmp_path, scan, monkeypatch):
    path = _write_ptychodus(tmp_path, scan)
    monkeypatch.setitem(sys.modules, "ptychodus", None)
    with pytest.raises(ConfigError, match=r"pip install 'ptychopinn\[ptychodus\]'"):
        load_scan(path)
    with pytest.raises(ConfigError, match="ptychodus"):
        save_product(tmp_path / "x.h5", _reconstruction(scan.object, scan), scan)


def test_inference_without_the_extra_skips_the_product(tmp_path, scan, monkeypatch, caplog):
    import ptychopinn.data.ptychodus_files as files

    monkeypatch.setattr(files, "ptychodus_available", lambda: False)
    stale = tmp_path / "reconstruction_product.h5"
    stale.write_text("an earlier run's")
    with caplog.at_level("INFO"):
        written = inference_cli._write_product(_reconstruction(scan.object, scan), scan, tmp_path)
    assert written is None and not stale.exists()
    assert "Ptychodus is not installed" in caplog.text
