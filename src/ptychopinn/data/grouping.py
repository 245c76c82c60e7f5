"""Grouping of neighbouring scan positions (``gridsize``; docs/architecture.md).

With ``gridsize = g`` each training sample is a group of ``C = g**2`` nearby scan positions
whose patches must agree on one shared object (the overlap constraint). Groups are drawn from
each anchor's ``K`` nearest neighbours so that members overlap; drawing a random subset of
the ``K - 1`` candidates lets one anchor yield several different groups when oversampling.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ptychopinn.config import check_count
from ptychopinn.errors import DataValidationError

logger = logging.getLogger(__name__)

__all__ = ["Groups", "group_all_positions", "group_positions"]

_DEDUP_ROUNDS = 10


@dataclass(frozen=True)
class Groups:
    """Groups of scan positions.

    Attributes:
        indices: (G, C) int64 indices into the scan positions; column 0 is the anchor, the
            other members follow in increasing index order.
        centres: (G, 2) float64 ``[x, y]`` group centre (mean of the member coordinates).
        offsets: (G, C, 2) float64 member coordinates minus the group centre.
    """

    indices: np.ndarray
    centres: np.ndarray
    offsets: np.ndarray

    @property
    def C(self) -> int:
        """Positions per group (gridsize**2)."""
        return int(self.indices.shape[1])

    @property
    def G(self) -> int:
        """Number of groups."""
        return int(self.indices.shape[0])


def _check_coords(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise DataValidationError(
            f"coords: expected an (M, 2) array of [x, y] positions, found shape {coords.shape}"
        )
    if coords.shape[0] == 0:
        raise DataValidationError("coords: expected at least one scan position, found 0")
    if not np.all(np.isfinite(coords)):
        n_bad = int(np.count_nonzero(~np.isfinite(coords)))
        raise DataValidationError(f"coords: expected finite values, found {n_bad} NaN/Inf")
    return coords


def _group_size(coords: np.ndarray, gridsize: int, neighbor_count: int) -> int:
    gridsize = check_count("gridsize", gridsize, 1)
    check_count("neighbor_count", neighbor_count, 1)
    c = gridsize**2
    m = coords.shape[0]
    if m < c:
        raise DataValidationError(
            f"coords: expected at least C = gridsize**2 = {c} scan positions for "
            f"gridsize {gridsize}, found {m}"
        )
    return c


def _make_groups(coords: np.ndarray, indices: np.ndarray) -> Groups:
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    members = coords[indices]  # (G, C, 2)
    centres = members.mean(axis=1)
    return Groups(indices=indices, centres=centres, offsets=members - centres[:, None, :])


def _candidates(coords: np.ndarray, anchors: np.ndarray, k: int) -> np.ndarray:
    """(G, k-1) nearest neighbours of each anchor, nearest first, the anchor itself excluded.

    With duplicated coordinates the tree may not list the anchor first (or at all), so the
    anchor is removed explicitly rather than by dropping column 0.
    """
    if k == 1:
        return np.empty((anchors.size, 0), dtype=np.int64)
    _, nn = cKDTree(coords).query(coords[anchors], k=k)
    nn = np.asarray(nn, dtype=np.int64).reshape(anchors.size, k)
    rank = np.where(nn == anchors[:, None], k, np.arange(k))  # push the anchor to the end
    order = np.argsort(rank, axis=1, kind="stable")
    return np.take_along_axis(nn, order, axis=1)[:, : k - 1]


def _assemble(anchors: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Anchor first, the other members sorted by index (a canonical, reproducible order)."""
    return np.concatenate([anchors[:, None], np.sort(others, axis=1)], axis=1)


def _draw_members(
    candidates: np.ndarray, anchors: np.ndarray, c: int, rng: np.random.Generator
) -> np.ndarray:
    """Pick C-1 of each row's candidates at random; redraw rows that duplicate another group."""

    def draw(rows: np.ndarray) -> np.ndarray:
        pick = np.argsort(rng.random((rows.size, candidates.shape[1])), axis=1)[:, : c - 1]
        return np.take_along_axis(candidates[rows], pick, axis=1)

    indices = _assemble(anchors, draw(np.arange(anchors.size)))
    for _ in range(_DEDUP_ROUNDS):
        _, first = np.unique(indices, axis=0, return_index=True)
        dup = np.setdiff1d(np.arange(anchors.size), first)
        if dup.size == 0:
            break
        indices[dup] = _assemble(anchors[dup], draw(dup))
    return indices


def distinct_groups(m: int, c: int, neighbor_count: int) -> int:
    """How many different groups of ``c`` positions ``m`` positions give: each anchor has
    C(K-1, C-1) member sets among its K nearest (K at most m)."""
    k = min(max(neighbor_count, c), m)
    return m * math.comb(k - 1, c - 1)


def _cap_groups(n_groups: int | None, m: int, c: int, neighbor_count: int) -> int | None:
    """At most the number of distinct groups: each anchor has C(K-1, C-1) member sets.

    Asking for more would only repeat groups (and multiply the training time), so the count
    is capped, with a log record that reaches callers who read logs, not warnings.
    """
    if n_groups is None or c == 1:
        return n_groups
    k = min(max(neighbor_count, c), m)
    distinct = distinct_groups(m, c, neighbor_count)
    n = check_count("n_groups", n_groups, 1)
    if n <= distinct:
        return n
    logger.warning(
        "n_groups=%d exceeds the %d distinct groups of %d positions with gridsize**2=%d and "
        "neighbor_count=%d; using %d (raise neighbor_count for more distinct groups)",
        n,
        distinct,
        m,
        c,
        k,
        distinct,
    )
    return distinct


def _sample_anchors(
    m: int, n_groups: int | None, gridsize: int, rng: np.random.Generator, sequential: bool
) -> np.ndarray:
    n = m if n_groups is None else check_count("n_groups", n_groups, 1)
    if n <= m:
        return np.arange(n) if sequential else np.sort(rng.choice(m, size=n, replace=False))
    if gridsize == 1:
        warnings.warn(
            f"n_groups={n} exceeds the {m} scan positions; with gridsize 1 each group is one "
            f"position, so using {m} groups",
            UserWarning,
            stacklevel=3,
        )
        return np.arange(m)
    # Oversampling: every position anchors at least once, the rest drawn with replacement.
    extra = rng.choice(m, size=n - m, replace=True)
    return np.concatenate([np.arange(m), extra])


def group_positions(
    coords: np.ndarray,
    gridsize: int,
    *,
    neighbor_count: int = 4,
    n_groups: int | None = None,
    seed: int | None = None,
    sequential: bool = False,
) -> Groups:
    """Draw groups of ``gridsize**2`` neighbouring positions for training.

    Args:
        coords: (M, 2) ``[x, y]`` scan positions.
        gridsize: group side; C = gridsize**2 positions per group.
        neighbor_count: K candidates per anchor (nearest, the anchor included); at least C
            are always used.
        n_groups: number of groups (default: one per position). Beyond M, gridsize 1 is capped
            at M with a warning; gridsize > 1 oversamples with distinct random member sets.
        seed: seed of the private random generator (results are reproducible per seed).
        sequential: take the first ``n_groups`` positions as anchors instead of a random subset.
    """
    coords = _check_coords(coords)
    c = _group_size(coords, gridsize, neighbor_count)
    rng = np.random.default_rng(seed)
    m = coords.shape[0]
    n_groups = _cap_groups(n_groups, m, c, int(neighbor_count))
    anchors = _sample_anchors(m, n_groups, int(gridsize), rng, sequential)
    if c == 1:
        return _make_groups(coords, anchors[:, None])
    k = min(max(int(neighbor_count), c), m)
    indices = _draw_members(_candidates(coords, anchors, k), anchors, c, rng)
    logger.debug("grouped %d positions into %d groups of %d (K=%d)", m, anchors.size, c, k)
    return _make_groups(coords, indices)


def group_all_positions(coords: np.ndarray, gridsize: int, *, neighbor_count: int = 4) -> Groups:
    """One deterministic group anchored at every position: the anchor and its C-1 nearest.

    Used at inference so that every scan position is predicted and stitched.
    ``neighbor_count`` is only validated (kept for a signature matching
    :func:`group_positions`); the nearest neighbours are always taken.
    """
    coords = _check_coords(coords)
    c = _group_size(coords, gridsize, neighbor_count)
    anchors = np.arange(coords.shape[0])
    if c == 1:
        return _make_groups(coords, anchors[:, None])
    return _make_groups(coords, _assemble(anchors, _candidates(coords, anchors, c)))
