"""Tests of neighbour grouping of scan positions (gridsize)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from ptychopinn.data.grouping import Groups, group_all_positions, group_positions
from ptychopinn.errors import ConfigError, DataValidationError


def _grid(side: int = 10, step: float = 3.0, jitter: float = 0.3) -> np.ndarray:
    """(side**2, 2) jittered raster scan, [x, y]."""
    rng = np.random.default_rng(123)
    yy, xx = np.mgrid[0:side, 0:side] * step
    coords = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    return coords + rng.uniform(-jitter, jitter, coords.shape)


def _check_consistent(groups: Groups, coords: np.ndarray) -> None:
    members = coords[groups.indices]
    np.testing.assert_allclose(groups.centres, members.mean(axis=1))
    np.testing.assert_allclose(groups.offsets, members - groups.centres[:, None, :])
    np.testing.assert_allclose(groups.offsets.sum(axis=1), 0.0, atol=1e-9)
    rest = groups.indices[:, 1:]
    assert np.all(np.diff(rest, axis=1) > 0), "members after the anchor sorted, no repeats"
    assert np.all(rest != groups.indices[:, :1]), "anchor not repeated"


def test_shapes_and_dtypes() -> None:
    coords = _grid()
    g = group_positions(coords, 2, neighbor_count=7, n_groups=30, seed=0)
    assert (g.G, g.C) == (30, 4)
    assert g.indices.shape == (30, 4) and g.indices.dtype == np.int64
    assert g.centres.shape == (30, 2) and g.centres.dtype == np.float64
    assert g.offsets.shape == (30, 4, 2) and g.offsets.dtype == np.float64
    _check_consistent(g, coords)
    g3 = group_positions(coords, 3, neighbor_count=12, seed=0)
    assert (g3.G, g3.C) == (100, 9)
    _check_consistent(g3, coords)


def test_members_are_among_k_nearest() -> None:
    coords = _grid()
    k = 7
    g = group_positions(coords, 2, neighbor_count=k, seed=5)
    _, nn = cKDTree(coords).query(coords[g.indices[:, 0]], k=k)
    for row, cand in zip(g.indices, nn, strict=True):
        assert set(row.tolist()) <= set(cand.tolist())
    # Members really are close: 7 nearest on a 3-px raster lie within two steps (+ jitter).
    dist = np.linalg.norm(coords[g.indices] - coords[g.indices[:, :1]], axis=-1)
    assert dist.max() < 2 * 3.0 * np.sqrt(2) + 1.0


def test_k_smaller_than_c_uses_c() -> None:
    coords = _grid()
    g = group_positions(coords, 2, neighbor_count=1, seed=0)
    expected = group_all_positions(coords, 2)
    np.testing.assert_array_equal(g.indices, expected.indices)


def test_deterministic_per_seed_and_different_across_seeds() -> None:
    coords = _grid()
    a = group_positions(coords, 2, neighbor_count=8, n_groups=40, seed=7)
    b = group_positions(coords, 2, neighbor_count=8, n_groups=40, seed=7)
    c = group_positions(coords, 2, neighbor_count=8, n_groups=40, seed=8)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.indices, c.indices)


def test_no_global_rng_use() -> None:
    coords = _grid()
    np.random.seed(0)
    before = np.random.random()
    np.random.seed(0)
    group_positions(coords, 2, neighbor_count=8, n_groups=50, seed=1)
    assert np.random.random() == before


def test_random_anchors_without_replacement() -> None:
    coords = _grid()
    g = group_positions(coords, 2, n_groups=25, seed=3)
    anchors = g.indices[:, 0]
    assert np.unique(anchors).size == 25
    assert not np.array_equal(anchors, np.arange(25))


def test_sequential_sampling() -> None:
    coords = _grid()
    g = group_positions(coords, 2, n_groups=12, seed=3, sequential=True)
    np.testing.assert_array_equal(g.indices[:, 0], np.arange(12))
    g1 = group_positions(coords, 1, n_groups=5, sequential=True)
    np.testing.assert_array_equal(g1.indices[:, 0], np.arange(5))


def test_oversampling_covers_all_positions_with_distinct_groups() -> None:
    coords = _grid(side=6)  # 36 positions
    g = group_positions(coords, 2, neighbor_count=8, n_groups=100, seed=0)
    assert g.G == 100
    assert set(g.indices[:, 0].tolist()) == set(range(36))
    _check_consistent(g, coords)
    # C(7, 3) = 35 subsets per anchor: groups sharing an anchor differ.
    assert np.unique(g.indices, axis=0).shape[0] == 100


def test_gridsize_one_trivial_and_capped() -> None:
    coords = _grid(side=4)
    g = group_positions(coords, 1, seed=0)
    assert (g.G, g.C) == (16, 1)
    np.testing.assert_array_equal(np.sort(g.indices[:, 0]), np.arange(16))
    np.testing.assert_allclose(g.centres, coords[g.indices[:, 0]])
    np.testing.assert_array_equal(g.offsets, 0.0)
    with pytest.warns(UserWarning, match="n_groups=50"):
        capped = group_positions(coords, 1, n_groups=50, seed=0)
    assert capped.G == 16


def test_group_all_positions_is_deterministic_nearest() -> None:
    coords = _grid()
    g = group_all_positions(coords, 2)
    np.testing.assert_array_equal(g.indices[:, 0], np.arange(coords.shape[0]))
    _, nn = cKDTree(coords).query(coords, k=4)
    np.testing.assert_array_equal(np.sort(g.indices, axis=1), np.sort(nn, axis=1))
    _check_consistent(g, coords)
    np.testing.assert_array_equal(group_all_positions(coords, 2).indices, g.indices)
    g1 = group_all_positions(coords, 1)
    np.testing.assert_array_equal(g1.indices[:, 0], np.arange(coords.shape[0]))


def test_duplicate_coordinates_keep_anchor_first() -> None:
    coords = np.repeat(_grid(side=3), 3, axis=0)  # every position three times
    g = group_all_positions(coords, 2)
    np.testing.assert_array_equal(g.indices[:, 0], np.arange(coords.shape[0]))
    _check_consistent(g, coords)
    r = group_positions(coords, 2, neighbor_count=6, seed=1)
    _check_consistent(r, coords)


def test_too_few_positions() -> None:
    coords = _grid(side=2)  # 4 positions
    with pytest.raises(DataValidationError, match=r"at least C = gridsize\*\*2 = 9.*found 4"):
        group_positions(coords, 3)
    with pytest.raises(DataValidationError, match="found 4"):
        group_all_positions(coords, 3)
    assert group_positions(coords, 2, seed=0).G == 4  # exactly C is fine


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gridsize": 0}, "gridsize"),
        ({"gridsize": 2, "neighbor_count": 0}, "neighbor_count"),
        ({"gridsize": 2, "n_groups": 0}, "n_groups"),
        ({"gridsize": True}, "gridsize: expected an integer >= 1, found True"),
        ({"gridsize": 2, "n_groups": 2.5}, "n_groups: expected an integer >= 1, found 2.5"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        group_positions(_grid(side=3), **kwargs)


def test_bad_coords() -> None:
    with pytest.raises(DataValidationError, match=r"\(M, 2\)"):
        group_positions(np.zeros((5, 3)), 1)
    coords = _grid(side=3)
    coords[2, 1] = np.nan
    with pytest.raises(DataValidationError, match="1 NaN"):
        group_positions(coords, 1)
