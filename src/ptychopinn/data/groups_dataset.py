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
