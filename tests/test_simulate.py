"""Tests of the synthetic-data generator (objects, probes, scans, diffraction)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ptychopinn.data.simulate import (
    PROBE_KINDS,
    SCAN_KINDS,
    SimulationConfig,
    band_limit_filter,
    extract_patches_exact,
    far_field_intensity,
    make_object,
    make_pattern,
    make_probe,
    make_scan,
    simulate_dataset,
    simulate_diffraction,
)
from ptychopinn.errors import ConfigError, DataValidationError

SMALL = {"N": 32, "object_size": 96, "step": 4.0}


@pytest.fixture(scope="module")
def small_data():
    return simulate_dataset(**SMALL)


def _periodic_band_limited(shape, band_limit, seed):
    """A periodic complex object with no content above ``band_limit`` x Nyquist."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    keep = np.hypot(fy, fx) < 0.5 * band_limit
    return np.fft.ifft2(np.fft.fft2(noise) * keep)


def _fourier_shift_reference(obj, x, y, n):
    """Patch by shifting the whole periodic object exactly, then slicing."""
    sx, sy = x - (n - 1) / 2, y - (n - 1) / 2
    ix, iy = int(np.floor(sx)), int(np.floor(sy))
    fy = np.fft.fftfreq(obj.shape[0])[:, None]
    fx = np.fft.fftfreq(obj.shape[1])[None, :]
    ramp = np.exp(2j * np.pi * (fy * (sy - iy) + fx * (sx - ix)))
    shifted = np.fft.ifft2(np.fft.fft2(obj) * ramp)
    return shifted[iy : iy + n, ix : ix + n]


# --------------------------------------------------------------------------------- patterns


@pytest.mark.parametrize("kind", ["lines", "grf", "disks"])
def test_pattern_seeded(kind):
    a = make_pattern(kind, (64, 80), seed=3)
    b = make_pattern(kind, (64, 80), seed=3)
    c = make_pattern(kind, (64, 80), seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01


@pytest.mark.parametrize("kind", ["lines", "grf", "disks", "constant", "camera", "astronaut"])
def test_pattern_kinds_in_unit_range(kind):
    img = make_pattern(kind, (48, 60), seed=0)
    assert img.shape == (48, 60) and img.dtype == np.float64
    assert np.isfinite(img).all()
    assert img.min() >= 0.0 and img.max() <= 1.0
    if kind == "constant":
        np.testing.assert_array_equal(img, 1.0)
    else:
        assert img.std() > 0.02


def test_skimage_image_is_resized_gray_camera():
    import skimage.data
    from skimage.transform import resize

    img = make_pattern("camera", (64, 64))
    expected = resize(skimage.data.camera() / 255.0, (64, 64), anti_aliasing=True)
    np.testing.assert_allclose(img, np.clip(expected, 0, 1), atol=1e-6)


def test_unknown_pattern_kind_lists_valid_kinds():
    with pytest.raises(ConfigError, match="lines.*grf.*camera") as info:
        make_pattern("zebra", (16, 16))
    assert "zebra" in str(info.value)


def test_grf_correlation_length_controls_smoothness():
    def roughness(img):
        return np.abs(np.diff(img, axis=1)).mean()

    fine = make_pattern("grf", (128, 128), seed=1, correlation_length=2.0)
    coarse = make_pattern("grf", (128, 128), seed=1, correlation_length=10.0)
    assert roughness(fine) > 3 * roughness(coarse)


# --------------------------------------------------------------------------------- objects


def test_object_within_ranges_without_band_limit():
    obj = make_object(
        (80, 96),
        amplitude="disks",
        phase="grf",
        amplitude_range=(0.3, 0.9),
        phase_range=(-1.0, 2.0),
        band_limit=None,
        seed=5,
    )
    assert obj.shape == (80, 96) and obj.dtype == np.complex64
    amp, ph = np.abs(obj), np.angle(obj)
    assert amp.min() >= 0.3 - 1e-6 and amp.max() <= 0.9 + 1e-6
    assert ph.min() >= -1.0 - 1e-5 and ph.max() <= 2.0 + 1e-5
    # the ranges are used in full
    assert amp.max() - amp.min() > 0.5 and ph.max() - ph.min() > 2.5


def test_band_limited_object_keeps_upper_amplitude_and_phase_range():
    obj = make_object(128, seed=2)  # default band_limit=0.5, lines phase, grf amplitude
    amp, ph = np.abs(obj), np.angle(obj)
    assert amp.max() <= 1.0 + 1e-5
    assert ph.min() >= -np.pi / 2 - 1e-5 and ph.max() <= np.pi / 2 + 1e-5
    # the amplitude dips below 0.5 only a little, at steep phase edges
    assert amp.min() > 0.3 and (amp < 0.45).mean() < 0.03 and np.median(amp) > 0.6


def test_object_reproducible_and_independent_maps():
    a = make_object(64, amplitude="grf", phase="grf", band_limit=None, seed=7)
    b = make_object(64, amplitude="grf", phase="grf", band_limit=None, seed=7)
    c = make_object(64, amplitude="grf", phase="grf", band_limit=None, seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.05
    corr = np.corrcoef(np.abs(a).ravel(), np.angle(a).ravel())[0, 1]
    assert abs(corr) < 0.5  # different sub-seeds, not the same field twice


def test_band_limit_filter_removes_high_frequencies_and_keeps_mean():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((128, 128))
    out = band_limit_filter(img, 0.5)
    assert abs(out.mean() - img.mean()) < 0.05
    # the interior has (almost) no power beyond 0.25 cycles / px
    inner = out[32:96, 32:96] * np.outer(np.hanning(64), np.hanning(64))
    spec = np.abs(np.fft.fftshift(np.fft.fft2(inner))) ** 2
    freq = np.fft.fftshift(np.fft.fftfreq(64))
    f = np.hypot(freq[:, None], freq[None, :])
    assert spec[f > 0.3].sum() < 1e-4 * spec.sum()


# ---------------------------------------------------------------------------------- probes


@pytest.mark.parametrize("kind", PROBE_KINDS)
@pytest.mark.parametrize("n", [32, 64, 128])
def test_probe_is_contained_and_normalised(kind, n):
    probe = make_probe(n, kind=kind)
    assert probe.shape == (n, n) and probe.dtype == np.complex64
    assert abs(np.abs(probe).max() - 1.0) < 1e-6
    power = np.abs(probe.astype(np.complex128)) ** 2
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2)
    assert power[r <= n / 2].sum() >= 0.99 * power.sum()
    edge = max(np.abs(probe[[0, -1]]).max(), np.abs(probe[:, [0, -1]]).max())
    assert edge < 0.05
    # centred on (N-1)/2, the patch centre of the coordinate contract
    cy, cx = (power * yy).sum() / power.sum(), (power * xx).sum() / power.sum()
    assert abs(cy - (n - 1) / 2) < 0.05 and abs(cx - (n - 1) / 2) < 0.05


def test_probe_size_and_curvature():
    small = make_probe(64, kind="gaussian", diameter=10)
    large = make_probe(64, kind="gaussian", diameter=20)
    assert (np.abs(large) > 0.5).sum() > 3 * (np.abs(small) > 0.5).sum()
    # FWHM of the amplitude along the centre row/col is the requested diameter
    flat = make_probe(65, kind="gaussian", diameter=16)
    assert (np.abs(flat[32]) >= 0.5).sum() in (15, 16, 17)
    curved = make_probe(64, kind="disk", curvature=3.0)
    np.testing.assert_allclose(np.abs(curved), np.abs(make_probe(64, kind="disk")), atol=1e-6)
    assert np.ptp(np.angle(curved[np.abs(curved) > 0.9])) > 1.0


def test_lens_probe_far_field_is_a_pupil():
    n = 64
    probe = make_probe(n, kind="lens")
    ff = far_field_intensity(probe.astype(np.complex128))
    yy, xx = np.mgrid[:n, :n]
    rho = np.hypot(yy - n // 2, xx - n // 2)
    # pupil radius 0.5 * N/2 = 16 frequency px with a soft edge
    assert ff[rho > 22].sum() < 1e-6 * ff.sum()
    assert ff[rho < 8].min() > 0.5 * ff.max()


def test_zoneplate_probe_far_field_is_an_annulus():
    n = 64
    probe = make_probe(n, kind="zoneplate")
    ff = far_field_intensity(probe.astype(np.complex128))
    yy, xx = np.mgrid[:n, :n]
    rho = np.hypot(yy - n // 2, xx - n // 2)
    # the lens pupil (radius 16) with its centre stopped (0.45 of the radius, soft edge)
    assert ff[rho > 22].sum() < 1e-6 * ff.sum()
    assert ff[rho < 2].max() < 1e-6 * ff.max()
    assert ff[(rho > 9) & (rho < 12)].min() > 0.5 * ff.max()
    # a structured probe: its amplitude is not largest at the centre, unlike a lens spot
    zone = np.abs(probe)
    c = n // 2
    assert zone[c - 1 : c + 1, c - 1 : c + 1].mean() < 0.8 * zone.max()


def test_probe_errors():
    with pytest.raises(ConfigError, match="kind"):
        make_probe(32, kind="bessel")
    with pytest.raises(ConfigError, match="diameter"):
        make_probe(32, diameter=40)


# ----------------------------------------------------------------------------------- scans


def _assert_inside(x, y, shape, n, margin):
    h, w = shape
    half = (n - 1) / 2
    assert x.dtype == np.float64 and y.dtype == np.float64
    assert (x - half >= margin - 1e-9).all() and (x + half <= w - 1 - margin + 1e-9).all()
    assert (y - half >= margin - 1e-9).all() and (y + half <= h - 1 - margin + 1e-9).all()


@pytest.mark.parametrize("kind", SCAN_KINDS)
@pytest.mark.parametrize("jitter", [0.0, 0.5, 4.0])
@pytest.mark.parametrize("margin", [0, 3])
def test_scan_positions_inside_object(kind, jitter, margin):
    shape = (120, 150)
    x, y = make_scan(kind, shape, 32, step=5.0, jitter=jitter, seed=1, margin=margin)
    assert x.size == y.size > 50
    _assert_inside(x, y, shape, 32, margin)


def test_scan_uniform_jitter_inside():
    x, y = make_scan("raster", (100, 100), 64, step=3.0, jitter=3.0, jitter_kind="uniform", seed=0)
    _assert_inside(x, y, (100, 100), 64, 0)


def test_a_jitter_far_beyond_the_scan_says_positions_were_clipped(caplog):
    with caplog.at_level("WARNING", logger="ptychopinn.data.simulate.scans"):
        make_scan("raster", (128, 128), 32, step=8.0, jitter=4.0, seed=0)
        assert not caplog.records  # redraws keep an ordinary jitter inside
        x, y = make_scan("raster", (128, 128), 32, step=8.0, jitter=1e9, seed=0)
    _assert_inside(x, y, (128, 128), 32, 0)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert f"{x.size} of {x.size} positions" in message and "1e+09 px jitter" in message


def test_raster_grid_and_counts():
    x, y = make_scan("raster", (256, 256), 64, step=7.0)
    assert x.size == 28 * 28
    xs = np.unique(x)
    np.testing.assert_allclose(np.diff(xs), 7.0)
    # centred in the scannable range [31.5, 223.5]
    assert abs((xs[0] - 31.5) - (223.5 - xs[-1])) < 1e-9
    xj, yj = make_scan("raster", (256, 256), 64, step=7.0, jitter=0.5, seed=0)
    assert 0.3 < np.std(xj - x) < 0.7


def test_raster_with_step_and_n_points_keeps_the_first():
    x, y = make_scan("raster", (256, 256), 64, step=7.0, n_points=100)
    full_x, full_y = make_scan("raster", (256, 256), 64, step=7.0)
    np.testing.assert_array_equal(x, full_x[:100])
    with pytest.raises(ConfigError, match="n_points"):
        make_scan("raster", (256, 256), 64, step=7.0, n_points=10_000)


def test_spiral_and_random_counts():
    x, y = make_scan("spiral", (200, 200), 32, n_points=300)
    assert x.size == 300
    # roughly uniform coverage: nearest-neighbour spacing is similar everywhere
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(x.size) * 1e9
    nn = d.min(axis=1)
    assert nn.min() > 0.4 * np.median(nn)
    xr, yr = make_scan("random", (200, 200), 32, n_points=123, seed=2)
    assert xr.size == 123
    xr2, _ = make_scan("random", (200, 200), 32, n_points=123, seed=2)
    np.testing.assert_array_equal(xr, xr2)


def test_scan_errors():
    with pytest.raises(ConfigError, match="scan kind"):
        make_scan("zigzag", (100, 100), 32)
    with pytest.raises(ConfigError, match="object_shape"):
        make_scan("raster", (30, 100), 32)
    with pytest.raises(ConfigError, match="step"):
        make_scan("raster", (100, 100), 32, step=-1)


# --------------------------------------------------------------------------------- patches


@pytest.mark.parametrize("n", [16, 15])
def test_extract_integer_aligned_equals_slicing(n):
    rng = np.random.default_rng(0)
    obj = (rng.standard_normal((60, 70)) + 1j * rng.standard_normal((60, 70))).astype(np.complex64)
    ks = [(0, 0), (5, 12), (60 - n, 70 - n)]
    x = np.array([kx + (n - 1) / 2 for _, kx in ks])
    y = np.array([ky + (n - 1) / 2 for ky, _ in ks])
    patches = extract_patches_exact(obj, x, y, n)
    assert patches.shape == (3, n, n) and patches.dtype == np.complex64
    for p, (ky, kx) in zip(patches, ks, strict=True):
        np.testing.assert_array_equal(p, obj[ky : ky + n, kx : kx + n])


@pytest.mark.parametrize("n", [32, 31])
def test_extract_fractional_matches_fourier_shift(n):
    obj = _periodic_band_limited((128, 144), 0.5, seed=1)
    obj /= np.abs(obj).max()
    rng = np.random.default_rng(2)
    x = rng.uniform(35, 108, 12)
    y = rng.uniform(35, 92, 12)
    x[0], y[0] = 40 + (n - 1) / 2 + 0.5, 40 + (n - 1) / 2  # half-pixel shift along x only
    got = extract_patches_exact(obj, x, y, n, passband=0.5)
    ref = np.stack([_fourier_shift_reference(obj, xi, yi, n) for xi, yi in zip(x, y, strict=True)])
    assert np.abs(got - ref).max() < 5e-4
    # a plain (periodic-window) Fourier shift of the same windows is much worse
    plain = extract_patches_exact(obj, x, y, n, passband=1.0)
    assert np.abs(plain - ref).max() > 10 * np.abs(got - ref).max()


def test_extract_rejects_positions_outside():
    obj = np.ones((40, 40), np.complex64)
    with pytest.raises(DataValidationError, match="inside the object"):
        extract_patches_exact(obj, np.array([10.0]), np.array([20.0]), 32)


# ------------------------------------------------------------------------------- far field


@pytest.mark.parametrize("n", [8, 7])
def test_far_field_matches_explicit_dft(n):
    rng = np.random.default_rng(0)
    psi = rng.standard_normal((3, n, n)) + 1j * rng.standard_normal((3, n, n))
    k = np.arange(n) - n // 2  # zero frequency (and the origin of psi) at index n // 2
    dft = np.exp(-2j * np.pi * np.outer(k, k) / n) / np.sqrt(n)
    expected = np.abs(np.einsum("um,bmn,vn->buv", dft, psi, dft)) ** 2
    got = far_field_intensity(psi)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.sum((1, 2)), (np.abs(psi) ** 2).sum((1, 2)), rtol=1e-12)


def test_far_field_single_precision_and_parseval():
    rng = np.random.default_rng(1)
    psi = (rng.standard_normal((5, 64, 64)) + 1j * rng.standard_normal((5, 64, 64))).astype(
        np.complex64
    )
    got = far_field_intensity(psi)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.sum((1, 2)), (np.abs(psi) ** 2).sum((1, 2)), rtol=1e-5)


# ----------------------------------------------------------------------------- diffraction


@pytest.fixture(scope="module")
def scene():
    obj = make_object(128, seed=0)
    probe = make_probe(32)
    x, y = make_scan("raster", obj.shape, 32, step=4.0, jitter=0.5, seed=0)
    return obj, probe, x, y


@pytest.mark.parametrize("nphotons", [1e4, 1e6])
def test_poisson_counts_match_nphotons(scene, nphotons):
    obj, probe, x, y = scene
    counts, scaled = simulate_diffraction(obj, probe, x, y, nphotons=nphotons, seed=0)
    assert counts.dtype == np.float32 and counts.shape == (x.size, 32, 32)
    assert scaled.dtype == np.complex64
    np.testing.assert_array_equal(counts, np.round(counts))  # photon counts
    assert abs(counts.sum((1, 2)).mean() / nphotons - 1) < 0.01
    again, _ = simulate_diffraction(obj, probe, x, y, nphotons=nphotons, seed=0)
    np.testing.assert_array_equal(counts, again)
    other, _ = simulate_diffraction(obj, probe, x, y, nphotons=nphotons, seed=1)
    assert not np.array_equal(counts, other)


def test_noiseless_counts_are_far_field_of_scaled_probe(scene):
    obj, probe, x, y = scene
    counts, scaled = simulate_diffraction(obj, probe, x, y, nphotons=1e5, poisson=False)
    assert abs(counts.sum((1, 2), dtype=np.float64).mean() / 1e5 - 1) < 1e-5
    patches = extract_patches_exact(obj, x, y, 32)
    expected = far_field_intensity(scaled.astype(np.complex128) * patches)
    np.testing.assert_allclose(counts, expected, rtol=1e-5, atol=1e-3 * expected.max())
    # the scaled probe is the given one times a positive scalar
    ratio = scaled / probe
    mask = np.abs(probe) > 1e-3
    np.testing.assert_allclose(ratio[mask], ratio[mask][0], rtol=1e-5)
    unscaled, same = simulate_diffraction(obj, probe, x, y, nphotons=None, poisson=False)
    np.testing.assert_array_equal(same, probe)


# --------------------------------------------------------------------------------- dataset


def test_simulate_dataset_shapes_and_labels(small_data):
    d = small_data
    m, n = d.n_positions, 32
    assert m > 100 and d.N == n
    assert d.diffraction.shape == (m, n, n) and d.diffraction.dtype == np.float32
    assert d.xcoords.dtype == np.float64 and d.ycoords.shape == (m,)
    assert d.probe.shape == (n, n) and d.probe.dtype == np.complex64
    assert d.object.shape == (96, 96) and d.object.dtype == np.complex64
    assert d.labels.shape == (m, n, n) and d.labels.dtype == np.complex64
    assert (d.diffraction >= 0).all()
    _assert_inside(d.xcoords, d.ycoords, d.object.shape, n, 0)
    np.testing.assert_array_equal(
        d.labels, extract_patches_exact(d.object, d.xcoords, d.ycoords, n, passband=0.5)
    )
    # the amplitudes are Poisson draws around |F(probe * label)|
    expected = far_field_intensity(d.probe.astype(np.complex128) * d.labels)
    assert abs(d.counts.sum() / expected.sum() - 1) < 1e-3
    assert d.metadata["nphotons"] == 1e6 and d.metadata["seed"] == 0
    assert abs(d.counts.sum((1, 2)).mean() / 1e6 - 1) < 0.01


def test_simulate_dataset_seeds(small_data):
    again = simulate_dataset(**SMALL)
    np.testing.assert_array_equal(again.diffraction, small_data.diffraction)
    np.testing.assert_array_equal(again.object, small_data.object)
    other = simulate_dataset(**SMALL, seed=1)
    assert not np.array_equal(other.object, small_data.object)
    assert not np.array_equal(other.xcoords, small_data.xcoords)


def test_same_probe_different_object(small_data):
    # same seed, other object seed: same scan, same probe up to the photon scale
    test = simulate_dataset(**SMALL, object_seed=123)
    assert np.abs(test.object - small_data.object).mean() > 0.05
    np.testing.assert_array_equal(test.xcoords, small_data.xcoords)
    ratio = test.probe / small_data.probe
    mask = np.abs(small_data.probe) > 1e-2 * np.abs(small_data.probe).max()
    np.testing.assert_allclose(ratio[mask], ratio[mask][0], rtol=1e-4)
    # or: exactly the same probe, passed in and not rescaled
    exact = simulate_dataset(**SMALL, seed=5, probe=small_data.probe, nphotons=None)
    np.testing.assert_array_equal(exact.probe, small_data.probe)
    assert not np.array_equal(exact.object, small_data.object)


def test_simulate_dataset_with_given_object():
    obj = make_object(80, amplitude="camera", phase="disks", seed=1)
    d = simulate_dataset(obj=obj, N=32, step=6.0, poisson=False, nphotons=1e4)
    np.testing.assert_array_equal(d.object, obj)
    assert abs(d.counts.sum((1, 2), dtype=np.float64).mean() / 1e4 - 1) < 1e-5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("N", 2),
        ("object_size", 16),
        ("object_phase", "zebra"),
        ("amplitude_range", (1.0, 0.5)),
        ("band_limit", 2.0),
        ("probe_kind", "bessel"),
        ("scan_kind", "zigzag"),
        ("step", -1.0),
        ("n_points", 0),
        ("jitter", -0.5),
        ("nphotons", 0.0),
        ("seed", "abc"),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"SimulationConfig.{field}"):
        SimulationConfig(**{field: value})
    with pytest.raises(ConfigError, match=f"SimulationConfig.{field}"):
        simulate_dataset(**{field: value})


def test_unknown_override_is_a_config_error():
    with pytest.raises(ConfigError, match="stepsize"):
        simulate_dataset(stepsize=3)


def test_default_size_is_fast():
    cfg = SimulationConfig(step=192 / 28)  # 29 x 29 = 841 patterns of 64 x 64
    simulate_dataset(cfg, N=32, object_size=64, step=8.0)  # warm imports and FFT plans
    t0 = time.perf_counter()
    d = simulate_dataset(cfg)
    elapsed = time.perf_counter() - t0
    assert d.n_positions == 841 and d.N == 64
    assert elapsed < 3.0, f"simulation of 841 patterns took {elapsed:.2f} s"


def test_npz_round_trip_if_available(tmp_path, small_data):
    try:
        from ptychopinn.data.npz import load_npz, save_npz, validate_data
    except ImportError:
        pytest.skip("ptychopinn.data.npz is not available")
    validate_data(small_data)
    path = save_npz(small_data, tmp_path / "sim.npz")
    back = load_npz(path)
    np.testing.assert_array_equal(back.diffraction, small_data.diffraction)
    np.testing.assert_array_equal(back.probe, small_data.probe)
    np.testing.assert_array_equal(back.labels, small_data.labels)
    np.testing.assert_array_equal(back.xcoords, small_data.xcoords)


def test_simulate_cli_flags_come_from_the_config(tmp_path, capsys):
    """Every SimulationConfig field has its flag (with its description); "none" is a value."""
    import dataclasses
    import json

    from ptychopinn.cli import simulate as simulate_cli

    help_text = simulate_cli.build_parser().format_help()
    for f in dataclasses.fields(SimulationConfig):
        assert f"--{f.name}" in help_text and f.metadata["doc"][:20] in " ".join(help_text.split())
    argv = ["--output", str(tmp_path / "s.npz"), "--N", "32", "--object_size", "64", "80"]
    argv += ["--scan_kind", "spiral", "--step", "none", "--n_points", "30", "--picture", "false"]
    assert simulate_cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["positions"] == 30 and summary["object_shape"] == [64, 80]


def test_a_scan_too_large_for_memory_is_refused_before_simulating(monkeypatch):
    from ptychopinn import system_memory

    monkeypatch.setattr(system_memory, "available_memory_bytes", lambda: 64 * 2**20)  # 64 MiB
    with pytest.raises(
        ConfigError, match=r"step / n_points: the scan would have up to \d+ positions"
    ):
        simulate_dataset(N=32, object_size=96, step=0.5)
    with pytest.raises(ConfigError, match="GiB available"):
        simulate_dataset(N=32, object_size=96, scan_kind="random", n_points=10**6)
    assert simulate_dataset(N=32, object_size=96, step=8).n_positions > 1  # fits


def test_simulate_cli_refuses_an_unwritable_output_before_simulating(tmp_path, capsys, monkeypatch):
    from ptychopinn.cli import simulate as simulate_cli

    def never(*args, **kwargs):
        raise AssertionError("simulated before checking the output")

    monkeypatch.setattr(simulate_cli, "simulate_dataset", never)
    (tmp_path / "afile").write_text("x")
    cases = ((tmp_path / "afile" / "s.npz", "cannot be written"), (tmp_path, "a directory"))
    for output, expected in cases:
        assert simulate_cli.main(["--output", str(output), "--N", "32"]) == 2
        assert f"{output}: " in (err := capsys.readouterr().err) and expected in err
