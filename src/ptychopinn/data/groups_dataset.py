"""A torch ``Dataset`` of neighbour groups: what the training loop and inference iterate over."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ptychopinn.data.grouping import Groups


class GroupDataset(Dataset):
    """Item ``g``: amplitudes (C, N, N), offsets (C, 2), index, optional labels (C, N, N)
    and optional ``probe`` (N, N): the scan's own normalised probe, when training on several
    scans with different probes.

    Patterns are gathered from the shared (M, N, N) array on access, so oversampled groups
    cost no extra memory.
    """

    def __init__(
        self,
        amplitudes: np.ndarray,
        groups: Groups,
        labels: np.ndarray | None = None,
        probe: torch.Tensor | None = None,
    ) -> None:
        self.amplitudes = torch.from_numpy(np.ascontiguousarray(amplitudes, dtype=np.float32))
        self.indices = torch.from_numpy(np.asarray(groups.indices, dtype=np.int64))
        self.offsets = torch.from_numpy(np.asarray(groups.offsets, dtype=np.float32))
        self.labels = (
            None
            if labels is None
            else torch.from_numpy(np.ascontiguousarray(labels, dtype=np.complex64))
        )
        self.probe = probe

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, g: int) -> dict[str, torch.Tensor]:
        members = self.indices[g]
        item = {"amplitudes": self.amplitudes[members], "offsets": self.offsets[g], "group": g}
        if self.labels is not None:
            item["labels"] = self.labels[members]
        if self.probe is not None:
            item["probe"] = self.probe
        return item


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A shuffle whose order depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so a run resumed from a checkpoint
    visits the groups in the same order as an uninterrupted one (``shuffle=True`` draws
    from the global RNG, whose state a checkpoint does not keep).
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())
