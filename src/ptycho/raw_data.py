"""``ptycho.raw_data.RawData``: a scan in the legacy API, backed by the core's PtychoData.

Construction validates the arrays once (core rules: one clear error per contract violation).
Diffraction may be raw detector counts, as Ptychodus sends them, or amplitudes: with
``diffraction_kind="auto"`` integer dtypes mean counts, float stacks are recognised by the core
heuristic (logged). The attributes keep their legacy names; ``diff3d`` holds amplitudes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ptycho import params
from ptycho._adapt import to_ptycho_data
from ptychopinn.data.grouping import (
    Groups,
    distinct_groups,
    group_all_positions,
    group_positions,
)
from ptychopinn.data.npz import load_npz, save_npz
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)

__all__ = ["RawData"]


def _legacy_layout(values: np.ndarray) -> np.ndarray:
    """(G, C, 2) per-member [x, y] -> the legacy (G, 1, 2, C) layout."""
    return np.ascontiguousarray(np.transpose(values, (0, 2, 1))[:, None])


class RawData:
    """One scan: diffraction, positions, probe and optional object/labels (legacy names)."""

    def __init__(self, data: PtychoData) -> None:
        self.data = data

    # ----------------------------------------------------------------- construction

    @staticmethod
    def from_coords_without_pc(
        xcoords: Any,
        ycoords: Any,
        diff3d: Any,
        probeGuess: Any,
        scan_index: Any,
        objectGuess: Any = None,
        *,
        diffraction_kind: str = "auto",
    ) -> RawData:
        """A scan from in-memory arrays ("without pc": start positions equal the positions).

        ``probeGuess`` may be (modes, N, N); mode 0 is used with a warning.
        """
        data = to_ptycho_data(
            diff3d,
            xcoords,
            ycoords,
            probeGuess,
            obj=objectGuess,
            diffraction_kind=diffraction_kind,
        )
        scan_index = np.asarray(scan_index)
        if scan_index.shape != (data.n_positions,):
            raise DataValidationError(
                f"<memory>: key 'scan_index': expected shape ({data.n_positions},), "
                f"found shape {scan_index.shape}"
            )
        data.scan_index = scan_index.astype(np.int64)
        return RawData(data)

    @staticmethod
    def from_file(path: str | os.PathLike[str], *, diffraction_kind: str = "auto") -> RawData:
        """Load an NPZ in the data contract (Ptychodus' ``train_data.npz`` export included)."""
        return RawData(load_npz(path, diffraction_kind=diffraction_kind, allow_outside=True))

    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write the scan as an NPZ (amplitudes, with ``diffraction_kind`` recorded)."""
        save_npz(self.data, path)

    # ----------------------------------------------------------------- legacy attributes

    @property
    def diff3d(self) -> np.ndarray:
        """(M, N, N) float32 diffraction amplitudes (sqrt of counts)."""
        return self.data.diffraction

    @property
    def xcoords(self) -> np.ndarray:
        return self.data.xcoords

    @property
    def ycoords(self) -> np.ndarray:
        return self.data.ycoords

    @property
    def xcoords_start(self) -> np.ndarray:
        return self.data.xcoords_start

    @property
    def ycoords_start(self) -> np.ndarray:
        return self.data.ycoords_start

    @property
    def probeGuess(self) -> np.ndarray:
        """(N, N) complex64 probe."""
        return self.data.probe

    @property
    def objectGuess(self) -> np.ndarray | None:
        return self.data.object

    @property
    def scan_index(self) -> np.ndarray:
        return self.data.scan_index

    @property
    def Y(self) -> np.ndarray | None:
        return self.data.labels

    def __len__(self) -> int:
        return self.data.n_positions

    def __repr__(self) -> str:
        return (
            f"RawData({self.data.n_positions} positions of {self.data.N}x{self.data.N}, "
            f"source={self.data.source!r})"
        )

    # ----------------------------------------------------------------- grouping

    def _groups(
        self, gridsize: int, K: int, nsamples: int, seed: int | None, sequential: bool
    ) -> Groups:
        """Every position anchors a group; beyond that, ``nsamples`` asks for extra groups.

        Stitching only what was grouped would return part of the scan, so fewer than one
        group per position is never produced.
        """
        m = self.data.n_positions
        if nsamples <= m or gridsize == 1:
            if nsamples != m:
                logger.info(
                    "nsamples=%d: grouping each of the %d scan positions once (the whole scan, "
                    "no repeats%s)",
                    nsamples,
                    m,
                    "; with gridsize 1 a group is one position" if nsamples > m else "",
                )
            return group_all_positions(self.data.coords, gridsize, neighbor_count=K)
        self._check_group_memory(gridsize, K, nsamples)
        return group_positions(
            self.data.coords,
            gridsize,
            neighbor_count=max(K, gridsize**2),
            n_groups=nsamples,
            seed=seed,
            sequential=sequential,
        )

    def _check_group_memory(self, gridsize: int, K: int, nsamples: int) -> None:
        """Refuse up front a group count whose arrays would not fit in memory.

        Each group holds C amplitude patterns, and the legacy callers keep a scaled copy and
        C complex patches per group besides (about 16 bytes per pixel in all); the groups are
        capped at the distinct ones, up to C(K-1, C-1) per position.
        """
        from ptychopinn import system_memory

        c, m = gridsize**2, self.data.n_positions
        groups = min(nsamples, distinct_groups(m, c, max(K, c)))
        system_memory.refuse_over_half(
            16 * groups * c * self.data.N**2,
            system_memory.available_memory_bytes(),
            f"nsamples (NumSamples): {nsamples} asks for {groups} groups of {c} patterns "
            f"from {m} positions,",
            f"use nsamples <= {m} (every position once) or a smaller value",
        )

    def generate_grouped_data(
        self,
        N: int,
        K: int = 4,
        nsamples: int = 1,
        dataset_path: str | None = None,
        seed: int | None = None,
        sequential_sampling: bool = False,
        gridsize: int | None = None,
    ) -> dict[str, Any]:
        """Group neighbouring positions (C = gridsize**2 per group), legacy dictionary layout.

        Every scan position anchors at least one group (``nsamples`` below the number of
        positions is raised to it). Keys: ``diffraction`` / ``X_full`` (G, N, N, C) amplitudes,
        ``coords_offsets`` (G, 1, 2, 1) group centres, ``coords_relative`` (G, 1, 2, C) member
        offsets from the centre, ``coords_nn`` (G, 1, 2, C) absolute member positions (and the
        ``*_start_*`` variants), ``nn_indices`` (G, C), ``Y`` (G, N, N, C) labels or None,
        ``objectGuess``, and ``dataset``/``groups`` (the core objects, for the loader).
        ``dataset_path`` is accepted for compatibility and ignored (nothing is cached).
        """
        del dataset_path
        if N != self.data.N:
            raise DataValidationError(
                f"{self.data.source}: diffraction patterns are {self.data.N}x{self.data.N} "
                f"but N={N} was requested"
            )
        if gridsize is None:
            gridsize = int(params.cfg.get("gridsize", 1))
        if isinstance(nsamples, bool) or not isinstance(nsamples, int | np.integer):
            raise ConfigError(f"nsamples: expected a positive integer, found {nsamples!r}")
        groups = self._groups(
            int(gridsize), int(K), max(1, int(nsamples)), seed, sequential_sampling
        )
        coords = self.data.coords
        starts = np.stack([self.data.xcoords_start, self.data.ycoords_start], axis=1)
        idx = groups.indices
        amplitudes = np.ascontiguousarray(np.moveaxis(self.data.diffraction[idx], 1, -1))
        start_centres = starts[idx].mean(axis=1)
        labels = None
        if self.data.labels is not None:
            labels = np.ascontiguousarray(np.moveaxis(self.data.labels[idx], 1, -1))
        logger.info(
            "grouped %d positions into %d groups of %d", self.data.n_positions, groups.G, groups.C
        )
        return {
            "diffraction": amplitudes,
            "X_full": amplitudes,
            "Y": labels,
            "coords_offsets": groups.centres[:, None, :, None].copy(),
            "coords_relative": _legacy_layout(groups.offsets),
            "coords_nn": _legacy_layout(coords[idx]),
            "coords_start_offsets": start_centres[:, None, :, None].copy(),
            "coords_start_relative": _legacy_layout(starts[idx] - start_centres[:, None, :]),
            "coords_start_nn": _legacy_layout(starts[idx]),
            "nn_indices": idx,
            "objectGuess": self.data.object,
            "dataset": self.data,
            "groups": groups,
        }
