"""Tests of the NPZ data contract: loading, conversion, validation and atomic saving."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from ptychopinn.data.npz import from_arrays, load_npz, save_npz, validate_data
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import DataValidationError

N = 8
M = 6
H = W = 24


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """A small valid dataset: counts-like amplitudes, positions well inside a 24x24 object."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(20.0, size=(M, N, N)).astype(np.float64)
    amp = np.sqrt(counts).astype(np.float32)
    amp[:, 0, 0] = 0.5  # guarantee clearly non-integer amplitudes
    x = rng.uniform(6.0, 17.0, M)
    y = rng.uniform(6.0, 17.0, M)
    probe = (rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))).astype(np.complex64)
    obj = np.exp(1j * rng.uniform(-1, 1, (H, W))).astype(np.complex64)
    return {"diff3d": amp, "xcoords": x, "ycoords": y, "probeGuess": probe, "objectGuess": obj}


def _write(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------- round trips


def test_round_trip_amplitude(tmp_path: Path) -> None:
    a = _arrays()
    labels = (np.ones((M, N, N)) * (1 + 2j)).astype(np.complex64)
    data = from_arrays(
        a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"], object=a["objectGuess"],
        labels=labels, diffraction_kind="amplitude",
    )  # fmt: skip
    out = save_npz(data, tmp_path / "sub" / "dir" / "rt.npz")
    assert out.exists()
    back = load_npz(out)
    assert back.diffraction.dtype == np.float32
    np.testing.assert_array_equal(back.diffraction, a["diff3d"])
    np.testing.assert_array_equal(back.xcoords, a["xcoords"])
    np.testing.assert_array_equal(back.ycoords, a["ycoords"])
    np.testing.assert_array_equal(back.xcoords_start, a["xcoords"])
    np.testing.assert_array_equal(back.scan_index, np.zeros(M, dtype=np.int64))
    np.testing.assert_array_equal(back.probe, a["probeGuess"])
    np.testing.assert_array_equal(back.object, a["objectGuess"])
    np.testing.assert_array_equal(back.labels, labels)
    assert back.metadata["input_diffraction_kind"] == "amplitude"
    assert back.metadata["diffraction_kind_reason"] == "metadata key in the data"
    with np.load(out) as z:
        assert str(z["diffraction_kind"]) == "amplitude"


def test_round_trip_as_counts(tmp_path: Path) -> None:
    a = _arrays()
    data = from_arrays(
        a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"], diffraction_kind="amplitude"
    )
    out = save_npz(data, tmp_path / "c.npz", as_counts=True)
    with np.load(out) as z:
        np.testing.assert_allclose(z["diff3d"], a["diff3d"].astype(np.float64) ** 2, rtol=1e-6)
        assert "objectGuess" not in z.files and "Y" not in z.files
    back = load_npz(out)
    np.testing.assert_allclose(back.diffraction, a["diff3d"], rtol=1e-6)
    assert back.object is None and back.labels is None


def test_integer_counts_are_square_rooted(tmp_path: Path, caplog) -> None:
    a = _arrays()
    counts = np.random.default_rng(1).poisson(9.0, size=(M, N, N)).astype(np.int32)
    path = _write(tmp_path, **{**a, "diff3d": counts})
    with caplog.at_level(logging.INFO, logger="ptychopinn.data.npz"):
        data = load_npz(path)
    assert data.diffraction.dtype == np.float32
    np.testing.assert_allclose(data.diffraction, np.sqrt(counts), rtol=1e-6)
    np.testing.assert_allclose(data.counts, counts, rtol=1e-5)
    assert data.metadata["input_diffraction_kind"] == "counts"
    assert "integer dtype" in caplog.text and "counts" in caplog.text


def test_diffraction_alias(tmp_path: Path) -> None:
    a = _arrays()
    amp = a.pop("diff3d")
    data = load_npz(_write(tmp_path, **a, diffraction=amp))
    np.testing.assert_array_equal(data.diffraction, amp)
    assert data.metadata["diffraction_key"] == "diffraction"


def test_legacy_layout_transposed_with_warning(tmp_path: Path) -> None:
    a = _arrays()
    legacy = np.transpose(a["diff3d"], (1, 2, 0))  # (N, N, M)
    path = _write(tmp_path, **{**a, "diff3d": legacy})
    with pytest.warns(UserWarning, match="legacy"):
        data = load_npz(path)
    assert data.diffraction.shape == (M, N, N)
    np.testing.assert_array_equal(data.diffraction, a["diff3d"])


def test_non_square_patterns_of_as_many_positions_as_rows_are_not_legacy(tmp_path: Path) -> None:
    """(M, M, K) with M positions is M non-square patterns, not the (N, N, M) layout."""
    a = _arrays()
    rows = np.zeros((M, M, M - 1), np.float32)
    path = _write(tmp_path, **{**a, "diff3d": rows})
    with pytest.raises(DataValidationError, match=r"'diff3d': expected square patterns"):
        load_npz(path)


def test_an_all_zero_object_is_a_canvas_not_a_truth(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, **{**a, "objectGuess": np.zeros_like(a["objectGuess"])})
    with pytest.warns(UserWarning, match="'objectGuess' is all zeros"):
        data = load_npz(path)
    assert data.object.shape == a["objectGuess"].shape
    assert not data.object_is_truth
    assert load_npz(_write(tmp_path, "t.npz", **a)).object_is_truth


def test_multimode_probe_uses_mode_zero(tmp_path: Path) -> None:
    a = _arrays()
    modes = np.stack([a["probeGuess"], 2 * a["probeGuess"], 3 * a["probeGuess"]])
    path = _write(tmp_path, **{**a, "probeGuess": modes})
    with pytest.warns(UserWarning, match="3 probe modes"):
        data = load_npz(path)
    np.testing.assert_array_equal(data.probe, a["probeGuess"])


def test_single_mode_probe_stack_accepted_silently(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, **{**a, "probeGuess": a["probeGuess"][None]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_npz(path)
    assert data.probe.shape == (N, N)


def test_labels_with_trailing_axis_are_squeezed(tmp_path: Path) -> None:
    a = _arrays()
    y = np.full((M, N, N, 1), 1 - 1j, dtype=np.complex64)
    data = load_npz(_write(tmp_path, **a, Y=y))
    assert data.labels.shape == (M, N, N)
    np.testing.assert_array_equal(data.labels, y[..., 0])


def test_optional_keys_and_extra_keys(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(
        tmp_path, **a, scan_index=np.arange(M), xcoords_start=a["xcoords"] + 0.25,
        ycoords_start=a["ycoords"] - 0.25, bad_pixels=np.zeros((N, N), dtype=bool),
    )  # fmt: skip
    data = load_npz(path)
    np.testing.assert_array_equal(data.scan_index, np.arange(M))
    np.testing.assert_allclose(data.xcoords_start, a["xcoords"] + 0.25)
    np.testing.assert_allclose(data.ycoords_start, a["ycoords"] - 0.25)


# --------------------------------------------------------------------------- auto detection


def test_auto_detects_float_integer_valued_counts() -> None:
    a = _arrays()
    counts = np.random.default_rng(2).poisson(30.0, size=(M, N, N)).astype(np.float32)
    data = from_arrays(counts, a["xcoords"], a["ycoords"], a["probeGuess"])
    assert data.metadata["input_diffraction_kind"] == "counts"
    assert data.metadata["diffraction_kind_reason"].startswith("heuristic")
    np.testing.assert_allclose(data.diffraction, np.sqrt(counts), rtol=1e-6)


def test_auto_detects_sqrt_amplitudes() -> None:
    a = _arrays()
    data = from_arrays(a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"])
    assert data.metadata["input_diffraction_kind"] == "amplitude"
    np.testing.assert_array_equal(data.diffraction, a["diff3d"])


def test_auto_integer_valued_but_small_is_amplitude() -> None:
    a = _arrays()
    binary = (np.arange(M * N * N).reshape(M, N, N) % 2).astype(np.float32)  # max == 1
    data = from_arrays(binary, a["xcoords"], a["ycoords"], a["probeGuess"])
    assert data.metadata["input_diffraction_kind"] == "amplitude"


def test_metadata_key_wins_over_heuristic(tmp_path: Path) -> None:
    a = _arrays()
    counts_like = np.full((M, N, N), 4.0, dtype=np.float32)
    path = _write(tmp_path, **{**a, "diff3d": counts_like}, diffraction_kind=np.array("amplitude"))
    data = load_npz(path)
    np.testing.assert_array_equal(data.diffraction, counts_like)
    path2 = _write(
        tmp_path, "b.npz", **{**a, "diff3d": a["diff3d"] ** 2}, diffraction_is_counts=np.True_
    )
    data2 = load_npz(path2)
    assert data2.metadata["input_diffraction_kind"] == "counts"
    np.testing.assert_allclose(data2.diffraction, a["diff3d"], rtol=1e-6)


def test_explicit_kind_overrides_everything(tmp_path: Path) -> None:
    a = _arrays()
    counts = np.full((M, N, N), 16, dtype=np.int64)
    path = _write(tmp_path, **{**a, "diff3d": counts})
    np.testing.assert_array_equal(load_npz(path, diffraction_kind="amplitude").diffraction, 16.0)
    np.testing.assert_array_equal(load_npz(path, diffraction_kind="counts").diffraction, 4.0)


def test_invalid_kind_is_rejected() -> None:
    a = _arrays()
    with pytest.raises(ValueError, match="diffraction_kind"):
        from_arrays(a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"], diffraction_kind="x")


# --------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.npz"
    with pytest.raises(DataValidationError, match=r"nope\.npz.*no such file"):
        load_npz(path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive \x00\xff" * 10)
    with pytest.raises(DataValidationError, match=r"bad\.npz.*corrupt"):
        load_npz(path)
    path.write_bytes(b"garbage garbage garbage")
    with pytest.raises(DataValidationError, match=r"bad\.npz"):
        load_npz(path)


def test_object_array_refused_without_unpickling(tmp_path: Path) -> None:
    a = _arrays()
    a["objectGuess"] = np.array([{"x": 1}, None], dtype=object)
    path = _write(tmp_path, **a)
    with pytest.raises(DataValidationError, match=r"key 'objectGuess'.*object array") as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_unused_object_array_is_left_unread(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, **a, evil=np.array([{"x": 1}, None], dtype=object))
    assert load_npz(path).n_positions == len(a["xcoords"])
    del a["diff3d"]
    with pytest.raises(DataValidationError, match=r"key 'diff3d'.*'evil'"):  # still named
        load_npz(_write(tmp_path, **a, evil=np.array([{"x": 1}], dtype=object)))


def test_missing_diffraction_lists_keys(tmp_path: Path) -> None:
    a = _arrays()
    del a["diff3d"]
    with pytest.raises(DataValidationError, match=r"key 'diff3d'.*'probeGuess'"):
        load_npz(_write(tmp_path, **a))


@pytest.mark.parametrize("key", ["xcoords", "ycoords", "probeGuess"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    a = _arrays()
    del a[key]
    with pytest.raises(DataValidationError, match=rf"d\.npz: key '{key}': expected .*found"):
        load_npz(_write(tmp_path, **a))


def test_non_square_patterns(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, **{**a, "diff3d": np.ones((M, N, N + 2), dtype=np.float32)})
    with pytest.raises(DataValidationError, match=r"key 'diff3d': expected square.*\(6, 8, 10\)"):
        load_npz(path)


def test_not_3d(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, **{**a, "diff3d": np.ones((N, N), dtype=np.float32)})
    with pytest.raises(DataValidationError, match=r"key 'diff3d'.*\(8, 8\)"):
        load_npz(path)


def test_probe_size_mismatch(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, **{**a, "probeGuess": np.ones((N + 1, N + 1), np.complex64)})
    with pytest.raises(DataValidationError, match=r"key 'probeGuess': expected shape \(8, 8\)"):
        load_npz(path)


def test_coordinate_count_mismatch(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, **{**a, "xcoords": a["xcoords"][:-1]})
    with pytest.raises(DataValidationError, match=r"key 'xcoords'.*\(6,\).*\(5,\)"):
        load_npz(path)


def test_labels_shape_mismatch() -> None:
    a = _arrays()
    with pytest.raises(DataValidationError, match=r"key 'Y'"):
        from_arrays(
            a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"],
            labels=np.ones((M, N, N - 1), np.complex64),
        )  # fmt: skip


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_diffraction(tmp_path: Path, bad: float) -> None:
    a = _arrays()
    a["diff3d"][1, 2, 3] = bad
    a["diff3d"][4, 0, 1] = bad
    with pytest.raises(DataValidationError, match=r"key 'diff3d': expected finite.*found 2 NaN"):
        load_npz(_write(tmp_path, **a))


def test_non_finite_coordinates(tmp_path: Path) -> None:
    a = _arrays()
    a["ycoords"][0] = np.nan
    with pytest.raises(DataValidationError, match=r"key 'ycoords': expected finite.*found 1"):
        load_npz(_write(tmp_path, **a))


def test_negative_diffraction(tmp_path: Path) -> None:
    a = _arrays()
    a["diff3d"][0, 0, 0] = -1.0
    with pytest.raises(DataValidationError, match=r"key 'diff3d': expected non-negative.*1 neg"):
        load_npz(_write(tmp_path, **a))


def test_negative_integer_counts(tmp_path: Path) -> None:
    a = _arrays()
    counts = np.ones((M, N, N), dtype=np.int16)
    counts[2, 3, 3] = -5
    with pytest.raises(DataValidationError, match=r"non-negative"):
        load_npz(_write(tmp_path, **{**a, "diff3d": counts}))


def test_empty_dataset(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(
        tmp_path, **{**a, "diff3d": np.zeros((0, N, N), np.float32), "xcoords": np.zeros(0),
                     "ycoords": np.zeros(0)},
    )  # fmt: skip
    with pytest.raises(DataValidationError, match=r"at least one scan position"):
        load_npz(path)


def test_positions_outside_canvas(tmp_path: Path) -> None:
    a = _arrays()
    a["xcoords"][3] = 2.0  # (N-1)/2 = 3.5 is the lowest valid centre
    a["ycoords"][5] = 20.0  # H-1-3.5 = 19.5 is the highest
    path = _write(tmp_path, **a)
    pattern = (
        r"key 'xcoords/ycoords': expected .*x in \[3\.5, 19\.5\].*"
        r"found 2 of 6 position\(s\) outside, first at index 3 \(x=2, y="
    )
    with pytest.raises(DataValidationError, match=pattern):
        load_npz(path)
    with pytest.warns(UserWarning, match="outside"):
        data = load_npz(path, allow_outside=True)
    assert data.n_positions == M


def test_positions_on_boundary_are_inside() -> None:
    a = _arrays()
    x = np.array([3.5, 19.5, 3.5 - 1e-9, 10, 10, 10])
    y = np.array([3.5, 19.5, 10, 10, 10, 19.5 + 1e-9])
    data = from_arrays(a["diff3d"], x, y, a["probeGuess"], object=a["objectGuess"])
    assert data.n_positions == M


def test_no_object_means_no_canvas_check() -> None:
    a = _arrays()
    data = from_arrays(a["diff3d"], a["xcoords"] - 100, a["ycoords"], a["probeGuess"])
    assert data.object is None


def test_validate_data_in_memory() -> None:
    a = _arrays()
    good = PtychoData(a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"])
    validate_data(good)
    bad = PtychoData(a["diff3d"].copy(), a["xcoords"], a["ycoords"], a["probeGuess"])
    bad.diffraction[0, 0, 1] = np.inf
    with pytest.raises(DataValidationError, match=r"<memory>: key 'diff3d': expected finite"):
        validate_data(bad)


def test_load_without_validation_skips_value_checks(tmp_path: Path) -> None:
    a = _arrays()
    a["diff3d"][0, 0, 0] = np.nan
    data = load_npz(_write(tmp_path, **a), validate=False)
    assert np.isnan(data.diffraction[0, 0, 0])


# --------------------------------------------------------------------------- atomic save


def test_atomic_save_leaves_nothing_on_failure(tmp_path: Path, monkeypatch) -> None:
    a = _arrays()
    data = from_arrays(a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"])

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    target = tmp_path / "out" / "x.npz"
    with pytest.raises(OSError, match="disk full"):
        save_npz(data, target)
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_save_keeps_previous_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    a = _arrays()
    data = from_arrays(a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"])
    target = save_npz(data, tmp_path / "x.npz")
    before = target.read_bytes()

    def broken_savez(file, **arrays):
        raise RuntimeError("boom")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(RuntimeError):
        save_npz(data, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_atomic_save_writes_through_a_symbolic_link(tmp_path: Path) -> None:
    """The link stays a link; the file it points at gets the new contents."""
    a = _arrays()
    data = from_arrays(a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"])
    (tmp_path / "store").mkdir()
    real = tmp_path / "store" / "scan.npz"
    real.write_bytes(b"old")
    link = tmp_path / "scan.npz"
    link.symlink_to(real)
    assert save_npz(data, link) == link
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert load_npz(real).n_positions == data.n_positions
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["scan.npz"]


def test_atomic_save_refuses_a_fifo(tmp_path: Path) -> None:
    import os

    from ptychopinn.errors import ConfigError

    a = _arrays()
    data = from_arrays(a["diff3d"], a["xcoords"], a["ycoords"], a["probeGuess"])
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="pipe.npz: expected a regular file"):
        save_npz(data, fifo)
    assert not fifo.is_file() and fifo.exists()  # still the FIFO


# ------------------------------------------------- degenerate values and coordinate units


def _without_object(**changes) -> dict[str, np.ndarray]:
    arrays = _arrays()
    del arrays["objectGuess"]
    arrays.update(changes)
    return arrays


def test_all_zero_probe_or_diffraction_is_named(tmp_path: Path) -> None:
    a = _arrays()
    path = _write(tmp_path, "p.npz", **{**a, "probeGuess": np.zeros_like(a["probeGuess"])})
    with pytest.raises(DataValidationError, match=r"p\.npz.*'probeGuess'.*non-zero energy"):
        load_npz(path)
    path = _write(tmp_path, "d.npz", **{**a, "diff3d": np.zeros_like(a["diff3d"])})
    with pytest.raises(DataValidationError, match=r"d\.npz.*'diff3d'.*some signal"):
        load_npz(path)


def test_negative_positions_move_onto_the_canvas(tmp_path: Path, caplog) -> None:
    a = _without_object()
    x = a["xcoords"] - 20.0  # patches reach far below pixel 0
    with caplog.at_level(logging.WARNING, logger="ptychopinn.data.npz"):
        data = load_npz(_write(tmp_path, **{**a, "xcoords": x}))
    assert "below pixel 0" in caplog.text
    half = (N - 1) / 2
    assert data.xcoords.min() >= half and data.xcoords.min() < half + 1
    np.testing.assert_allclose(np.diff(data.xcoords), np.diff(x))  # relative geometry kept
    h, w = data.canvas_shape()
    assert data.xcoords.max() + half <= w - 1 and data.ycoords.max() + half <= h - 1


def test_positions_in_the_wrong_unit(tmp_path: Path, caplog) -> None:
    a = _without_object()
    with pytest.raises(DataValidationError, match=r"'xcoords/ycoords'.*wrong unit"):
        micro = {"xcoords": a["xcoords"] * 1e6, "ycoords": a["ycoords"] * 1e6}
        load_npz(_write(tmp_path, "um.npz", **{**a, **micro}))
    # A small scan far from the origin needs the same huge canvas (sized from the maximum).
    far = {"xcoords": a["xcoords"] + 1e6, "ycoords": a["ycoords"] + 1e6}
    with pytest.raises(DataValidationError, match=r"'xcoords/ycoords'.*canvas.*wrong unit"):
        load_npz(_write(tmp_path, "far.npz", **{**a, **far}))
    metres = {"xcoords": a["xcoords"] * 1e-8, "ycoords": a["ycoords"] * 1e-8}
    with caplog.at_level(logging.WARNING, logger="ptychopinn.data.npz"):
        load_npz(_write(tmp_path, "m.npz", **{**a, **metres}))
    assert "in metres" in caplog.text


def test_a_stray_position_that_stretches_the_canvas_is_named(tmp_path: Path, caplog) -> None:
    a = _arrays()
    x, y = a["xcoords"].copy(), a["ycoords"].copy()
    x[-1] = y[-1] = 500.0
    with caplog.at_level(logging.WARNING, logger="ptychopinn.data.npz"):
        load_npz(_write(tmp_path, "ok.npz", **_without_object()))
        assert "canvas" not in caplog.text
        load_npz(_write(tmp_path, "far.npz", **_without_object(xcoords=x, ycoords=y)))
    assert "far.npz: key 'xcoords/ycoords'" in caplog.text
    assert f"position {M - 1} at (x=500, y=500)" in caplog.text
