"""Tests for ptychopinn.metrics: alignment removes the ptychographic ambiguities, scores behave."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from ptychopinn import metrics
from ptychopinn.errors import DataValidationError

SHIFT = (2.3, -1.7)  # [dy, dx] applied to the truth to make the "reconstruction"


def smooth_object(n: int = 128, seed: int = 0, sigma: float = 4.0) -> np.ndarray:
    """Band-limited complex object: amplitude in [0.5, 1], phase in [-1, 1]."""
    rng = np.random.default_rng(seed)

    def field() -> np.ndarray:
        f = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="wrap")
        return (f - f.min()) / (f.max() - f.min())

    return (0.5 + 0.5 * field()) * np.exp(1j * (2 * field() - 1))


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:n, :n]
    return yy.astype(float), xx.astype(float)


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return smooth_object()


def corrupt(obj: np.ndarray, b: float = 0.02, c: float = -0.015) -> np.ndarray:
    """Shift, add phase offset + ramp and scale the amplitude: all ptychographic ambiguities."""
    yy, xx = grid(obj.shape[0])
    return 1.7 * metrics.apply_shift(obj, SHIFT) * np.exp(1j * (0.8 + b * xx + c * yy))


# ----------------------------------------------------------------------------- evaluate


def test_truth_against_itself_is_perfect(truth):
    res = metrics.evaluate(truth, truth)
    assert res["amp_ssim"] == pytest.approx(1.0, abs=1e-9)
    assert res["phase_ssim"] == pytest.approx(1.0, abs=1e-9)
    assert res["complex_rel_error"] < 1e-10
    assert res["frc50"] == 1.0
    assert res["amp_psnr"] == metrics.PSNR_CAP_DB
    assert res["shift_x"] == pytest.approx(0.0, abs=1e-9)
    assert res["amplitude_scale"] == pytest.approx(1.0)
    assert all(type(v) is float for v in res.values())
    json.dumps(res, allow_nan=False)


def test_ambiguities_are_removed(truth):
    res = metrics.evaluate(corrupt(truth), truth)
    assert res["amp_ssim"] >= 0.98
    assert res["phase_ssim"] >= 0.98
    assert res["complex_rel_error"] < 0.05
    assert res["shift_y"] == pytest.approx(-SHIFT[0], abs=0.1)
    assert res["shift_x"] == pytest.approx(-SHIFT[1], abs=0.1)
    assert res["amplitude_scale"] == pytest.approx(1 / 1.7, rel=1e-3)
    assert res["phase_ramp_x"] == pytest.approx(0.02, abs=1e-3)
    assert res["phase_ramp_y"] == pytest.approx(-0.015, abs=1e-3)
    assert res["frc50"] > 0.95


def test_steep_wrapped_ramp_and_unaligned_scores_are_poor(truth):
    # 0.3 rad/px wraps the phase about six times across the image.
    rec = corrupt(truth, b=0.3, c=-0.25)
    good = metrics.evaluate(rec, truth)
    assert good["complex_rel_error"] < 0.01
    assert good["phase_ssim"] > 0.99
    raw = metrics.evaluate(rec, truth, align_first=False)
    assert raw["complex_rel_error"] > 1.0
    assert raw["phase_ssim"] < 0.5
    assert raw["shift_x"] == 0.0 and raw["amplitude_scale"] == 1.0


def test_non_periodic_crop_with_scan_mask():
    """Realistic case: the reconstruction is not a circular shift of the truth."""
    big = smooth_object(256, seed=3)
    truth = big[64:192, 64:192]
    yy, xx = grid(128)
    rec = metrics.apply_shift(big, (0.43, 0.77))[64:192, 64:192]
    rec = 0.6 * rec * np.exp(1j * (-2.0 + 0.05 * xx + 0.01 * yy))
    xs, ys = np.meshgrid(np.arange(30, 99, 8.0), np.arange(30, 99, 8.0))
    res = metrics.evaluate(rec, truth, xcoords=xs.ravel(), ycoords=ys.ravel(), N=32)
    assert res["shift_y"] == pytest.approx(-0.43, abs=0.05)
    assert res["shift_x"] == pytest.approx(-0.77, abs=0.05)
    assert res["amp_ssim"] > 0.98 and res["phase_ssim"] > 0.98
    assert res["complex_rel_error"] < 0.01


def test_phase_near_pi_is_not_penalised_for_wrapping(truth):
    # Truth phase in pi + [-1, 1] crosses the +-pi cut; the wrapped angle() jumps by 2*pi.
    wrapped = truth * np.exp(1j * np.pi)
    res = metrics.evaluate(wrapped * np.exp(0.3j), wrapped, register=False)
    assert res["phase_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert res["phase_psnr"] > 100


def test_random_object_scores_poorly(truth):
    rng = np.random.default_rng(5)
    noise = rng.uniform(0.5, 1.0, truth.shape) * np.exp(1j * rng.uniform(-1, 1, truth.shape))
    res = metrics.evaluate(noise, truth)
    assert res["amp_ssim"] < 0.3
    assert res["phase_ssim"] < 0.3
    assert res["frc50"] < 0.3
    assert res["complex_rel_error"] > 0.3


# ----------------------------------------------------------------------------- FRC


def test_frc_with_white_noise_decreases_and_blur_lowers_frc50(truth):
    rng = np.random.default_rng(2)
    noise = 0.1 * (rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape))
    freq, curve = metrics.frc(truth, truth + noise)
    assert freq[0] == 0.0 and freq[-1] == 0.5 and len(freq) == 65
    assert curve[:8].mean() > 0.95
    assert curve[-16:].mean() < 0.2
    assert np.corrcoef(freq, curve)[0, 1] < -0.6
    sharp = metrics.frc50(truth, truth + noise)
    assert 0.05 < sharp < 0.6
    blurred = ndimage.gaussian_filter(truth.real, 1.5) + 1j * ndimage.gaussian_filter(
        truth.imag, 1.5
    )
    assert metrics.frc50(truth, blurred + noise) < sharp - 0.01


def test_frc_non_square_uses_centred_square(truth):
    a = truth[:, :100]
    freq, curve = metrics.frc(a, a)
    assert len(freq) == 51 and freq[-1] == 0.5
    assert np.allclose(curve[np.isfinite(curve)], 1.0)
    mask = np.zeros(truth.shape, bool)
    mask[20:60, 10:110] = True
    freq, _ = metrics.frc(truth, truth, mask=mask)
    assert len(freq) == 21


# ----------------------------------------------------------------------------- building blocks


def test_apply_shift_convention():
    img = np.zeros((32, 32))
    img[10, 10] = 1.0
    out = metrics.apply_shift(img, (2, 3))
    assert out.dtype == np.float64
    assert np.unravel_index(np.argmax(out), out.shape) == (12, 13)
    cplx = smooth_object(64)
    back = metrics.apply_shift(metrics.apply_shift(cplx, (1.3, -0.6)), (-1.3, 0.6))
    assert np.allclose(back, cplx, atol=1e-10)


def test_register_translation_recovers_subpixel_shift(truth):
    rec = metrics.apply_shift(truth, SHIFT) * np.exp(2.0j) * 3.0
    shift = metrics.register_translation(rec, truth)
    assert np.allclose(shift, [-SHIFT[0], -SHIFT[1]], atol=0.05)


def test_phase_ramp_fit_and_amplitude_scale(truth):
    yy, xx = grid(truth.shape[0])
    rec = 2.5 * truth * np.exp(1j * (1.2 + 0.3 * xx - 0.2 * yy))
    a, b, c = metrics.fit_phase_ramp(rec, truth)
    assert (b, c) == (pytest.approx(0.3, abs=1e-9), pytest.approx(-0.2, abs=1e-9))
    assert np.angle(np.exp(1j * (a - 1.2))) == pytest.approx(0.0, abs=1e-9)
    fixed = metrics.remove_phase_ramp_and_offset(rec, truth, None)
    assert np.allclose(fixed, 2.5 * truth, atol=1e-9)
    assert metrics.fit_amplitude_scale(rec, truth) == pytest.approx(0.4)
    _, b0, c0 = metrics.fit_phase_ramp(rec, truth, ramp=False)
    assert b0 == 0.0 and c0 == 0.0


def test_align_switches(truth):
    rec = corrupt(truth)
    aligned, info = metrics.align(rec, truth, register=False, phase_ramp=False, scale=False)
    assert info["shift"] == [0.0, 0.0] and info["amplitude_scale"] == 1.0
    assert info["phase_ramp"][1:] == [0.0, 0.0]
    assert abs(np.sum(aligned * np.conj(truth))) > 0  # offset removed: correlation is real
    assert np.angle(np.sum(aligned * np.conj(truth))) == pytest.approx(0.0, abs=1e-9)
    aligned, info = metrics.align(rec, truth)
    assert set(info) == {"shift", "phase_offset", "phase_ramp", "amplitude_scale"}
    assert np.linalg.norm(aligned - truth) / np.linalg.norm(truth) < 1e-3


# ----------------------------------------------------------------------------- scan mask


def _union_of_patches(xs, ys, n, shape):
    out = np.zeros(shape, bool)
    half = (n - 1) // 2
    for x, y in zip(xs, ys, strict=True):
        r0, c0 = int(y) - half, int(x) - half
        out[max(r0, 0) : max(r0 + n, 0), max(c0, 0) : max(c0 + n, 0)] = True
    return out


def test_scanned_region_mask_is_union_of_patches():
    xs = np.array([10.0, 30.0, 52.0, 3.0])
    ys = np.array([12.0, 12.0, 40.0, 60.0])  # the last patch hangs off the canvas
    mask = metrics.scanned_region_mask(xs, ys, 15, (64, 70), margin=0)
    assert mask.dtype == np.bool_ and mask.shape == (64, 70)
    assert np.array_equal(mask, _union_of_patches(xs, ys, 15, (64, 70)))


def test_scanned_region_mask_shrinks_with_margin():
    xs, ys = np.meshgrid(np.arange(20, 90, 6.0), np.arange(20, 90, 6.0))
    full = metrics.scanned_region_mask(xs, ys, 17, (110, 110), margin=0)
    previous = full
    for margin in (1, 4, 8):
        m = metrics.scanned_region_mask(xs, ys, 17, (110, 110), margin=margin)
        assert m.sum() < previous.sum() and not np.any(m & ~previous)
        previous = m
    expected = ndimage.binary_erosion(full, np.ones((9, 9), bool))
    assert np.array_equal(metrics.scanned_region_mask(xs, ys, 17, (110, 110), margin=4), expected)
    default = metrics.scanned_region_mask(xs, ys, 17, (110, 110))  # N // 4 == 4
    assert np.array_equal(default, expected)
    with pytest.warns(UserWarning, match="leaves no pixels"):
        fallback = metrics.scanned_region_mask(xs, ys, 17, (110, 110), margin=60)
    assert np.array_equal(fallback, full)


def test_scanned_region_mask_even_patch_and_errors():
    mask = metrics.scanned_region_mask([20.0], [20.0], 8, (40, 40), margin=0)
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows[0] == 17 and rows[-1] == 23  # samples at 16.5..23.5: centres 17..23 inside
    with pytest.raises(DataValidationError, match="overlaps"):
        metrics.scanned_region_mask([500.0], [500.0], 8, (40, 40))
    with pytest.raises(DataValidationError, match="xcoords/ycoords"):
        metrics.scanned_region_mask([1.0, 2.0], [1.0], 8, (40, 40))


def _raster(start: float, stop: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    g = np.arange(start, stop, step)
    xs, ys = np.meshgrid(g, g)
    return xs.ravel(), ys.ravel()


def test_illuminated_mask_is_the_summed_probe_intensity_thresholded():
    from ptychopinn.data.simulate.probes import make_probe

    probe = make_probe(32, kind="disk", diameter=10)
    xs, ys = _raster(30.0, 70.0, 4.0)
    xs = xs + 0.3  # off-grid centres are placed rounded, as the threshold is about a band
    lit = metrics.illuminated_mask(probe, xs, ys, (100, 100))
    intensity = np.abs(probe) ** 2 / (np.abs(probe) ** 2).max()
    brute = np.zeros((100, 100))
    for x, y in zip(xs, ys, strict=True):
        r, c = int(np.rint(y - 15.5)), int(np.rint(x - 15.5))
        brute[r : r + 32, c : c + 32] += intensity
    np.testing.assert_array_equal(lit, brute >= metrics.UNLIT_FRACTION * brute.max())
    # A 10 px disk in a 32 px window: the scanned region's band beyond the disk is unlit.
    scanned = metrics.scanned_region_mask(xs, ys, 32, (100, 100))
    assert lit[50, 50] and scanned[50, 50]
    assert (scanned & ~lit).sum() > 0.1 * scanned.sum()
    assert not lit[50, 23] and scanned[50, 23]  # 7 px before the first column of centres


def test_scores_leave_out_what_the_probe_never_lit():
    """A reconstruction right where light fell and empty elsewhere (what stitching gives
    for a hard-edged probe) scores as right once the probe is given."""
    from ptychopinn.data.simulate.probes import make_probe

    rng = np.random.default_rng(0)
    truth = (0.8 + 0.2 * ndimage.gaussian_filter(rng.random((100, 100)), 3)) * np.exp(
        1j * ndimage.gaussian_filter(rng.standard_normal((100, 100)), 3)
    )
    probe = make_probe(32, kind="disk", diameter=10)
    xs, ys = _raster(30.0, 70.0, 4.0)
    recon = np.where(metrics.illuminated_mask(probe, xs, ys, truth.shape), truth, 0)
    without = metrics.evaluate(recon, truth, xcoords=xs, ycoords=ys, N=32)
    scored = metrics.evaluate(recon, truth, xcoords=xs, ycoords=ys, N=32, probe=probe)
    assert without["amp_ssim"] < 0.6
    assert scored["amp_ssim"] > 0.99 and scored["phase_ssim"] > 0.99
    # A probe lighting its whole window changes nothing.
    flat = np.ones((32, 32), np.complex64)
    same = metrics.evaluate(recon * 0 + truth, truth, xcoords=xs, ycoords=ys, N=32, probe=flat)
    assert same["amp_ssim"] > 0.99
    with pytest.raises(DataValidationError, match=r"probe: expected an \(N, N\) array"):
        metrics.illuminated_mask(np.ones(5), xs, ys, truth.shape)


# ----------------------------------------------------------------------------- validation


def test_invalid_inputs_raise(truth):
    with pytest.raises(DataValidationError, match=r"\(128, 128\).*\(64, 64\)"):
        metrics.evaluate(truth, truth[:64, :64])
    bad = truth.copy()
    bad[3, 4] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        metrics.evaluate(bad, truth)
    with pytest.raises(DataValidationError, match="NaN"):
        metrics.frc(truth, bad)
    with pytest.raises(DataValidationError, match="mask"):
        metrics.evaluate(truth, truth, mask=np.ones((10, 10), bool))
    with pytest.raises(DataValidationError, match="no pixels"):
        metrics.evaluate(truth, truth, mask=np.zeros(truth.shape, bool))
    with pytest.raises(DataValidationError, match="N"):
        metrics.evaluate(truth, truth, xcoords=[10.0], ycoords=[10.0])
    tiny = np.zeros(truth.shape, bool)
    tiny[5:9, 5:9] = True
    with pytest.raises(DataValidationError, match="bounding box"):
        metrics.evaluate(truth, truth, mask=tiny)
    with pytest.raises(DataValidationError, match="2-D"):
        metrics.align(truth[None], truth[None])


def test_featureless_reconstruction_is_not_registered(truth):
    flat = np.full(truth.shape, 0.7 + 0j)
    with pytest.warns(UserWarning, match="no contrast"):
        res = metrics.evaluate(flat, truth)
    assert res["shift_x"] == 0.0 and res["shift_y"] == 0.0
    assert res["phase_ssim"] < 0.3 and res["frc50"] < 0.3


def test_implausibly_large_registration_is_rejected(truth):
    """A poor reconstruction whose best correlation is a wrap-around shift is compared
    in place (with a warning), not shifted half-way across the canvas."""
    n = truth.shape[0]
    other = smooth_object(seed=9)
    # Same content as the truth, displaced by half the canvas: "best" registration is n/2.
    fooled = np.roll(truth, (n // 2, n // 2), axis=(0, 1)) * 0.5 + other * 0.5
    with pytest.warns(UserWarning, match="comparing without registration"):
        aligned, info = metrics.align(fooled, truth)
    assert info["shift"] == [0.0, 0.0]
    assert np.all(np.isfinite(aligned))
    # Genuine small shifts are still registered.
    _, info = metrics.align(corrupt(truth), truth)
    assert np.allclose(info["shift"], [-SHIFT[0], -SHIFT[1]], atol=0.1)
