"""Scans + training config -> the training and validation loaders (one LightningDataModule).

The one place that decides how scans become batches: grouping of neighbouring positions,
ground-truth labels when a loss needs them, each scan's own probe when there are several,
the seeded epoch shuffle that makes a resumed run visit groups as an uninterrupted one, and
the loader settings. ``workflows.train.train`` and the PtychoPINN-Torch ``Trainer`` both fit
with it (``trainer.fit(module, datamodule=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ptychopinn.config import ExecutionConfig, TrainingConfig
from ptychopinn.data.grouping import Groups, distinct_groups, group_positions
from ptychopinn.data.groups_dataset import EpochShuffle, GroupDataset
from ptychopinn.data.simulate import extract_patches_exact
from ptychopinn.data.types import PtychoData, require_scan
from ptychopinn.errors import ConfigError, DataValidationError
from ptychopinn.model.pinn import normalise_probe


def as_scans(train_data: PtychoData | Sequence[PtychoData]) -> list[PtychoData]:
    """One scan or several, as a non-empty list."""
    if isinstance(train_data, PtychoData):
        return [train_data]
    scans = list(train_data) if isinstance(train_data, list | tuple) else [train_data]
    if not scans:
        raise ConfigError("train_data: expected at least one training scan, found none")
    for scan in scans:
        require_scan(scan, "train_data")
    return scans


def needs_labels(training: TrainingConfig) -> bool:
    """Whether the configured losses compare with ground-truth patches."""
    return (
        training.model.model_type == "supervised"
        or training.realspace_mae_weight > 0
        or training.realspace_weight > 0
    )


def training_labels(data: PtychoData) -> np.ndarray | None:
    """Ground-truth patches: ``Y`` when present, else cut from ``objectGuess``, else None."""
    if data.labels is not None:
        return data.labels
    if data.object_is_truth:
        return extract_patches_exact(data.object, data.xcoords, data.ycoords, data.N)
    return None


def _uniform(labels: np.ndarray) -> bool:
    """Whether every ground-truth pixel holds (nearly) the same complex value."""
    spread = np.abs(labels - labels.flat[0]).max()
    return bool(spread <= 1e-6 * max(1.0, float(np.abs(labels.flat[0]))))


def groups_for(training: TrainingConfig, n_positions: int) -> int | None:
    """Groups drawn from one scan: ``n_groups`` when set, else ``groups_per_position`` x M,
    at most the scan's distinct groups (a small scan has few, gridsize 1 has M; no warning,
    since the user asked for no count in particular). ``None`` (one group anchored at each
    position, the grouping's own default) when that is 1."""
    if training.n_groups is not None:
        return training.n_groups
    gpp = training.groups_per_position
    if gpp == 1:
        return None
    wanted = max(1, round(gpp * n_positions))
    c = training.model.gridsize**2
    # at least 1: a scan too small for one group gets group_positions' own message
    return max(1, min(wanted, distinct_groups(n_positions, c, training.neighbor_count)))


def make_group_dataset(
    data: PtychoData,
    training: TrainingConfig,
    *,
    seed: int | None,
    need_labels: bool,
    with_probe: bool = False,
    for_validation: bool = False,
) -> tuple[GroupDataset, Groups]:
    """Group the scan positions and wrap them (with labels if needed) as a torch dataset;
    ``with_probe`` gives every group the scan's own normalised probe. A validation scan
    gets one group per position (``groups_per_position`` is for training variety)."""
    groups = group_positions(
        data.coords,
        training.model.gridsize,
        neighbor_count=training.neighbor_count,
        n_groups=training.n_groups if for_validation else groups_for(training, data.n_positions),
        seed=seed,
        sequential=training.sequential_sampling,
    )
    labels = None
    if need_labels:
        labels = training_labels(data)
        if labels is None:
            raise DataValidationError(
                f"{data.source}: supervised training needs ground-truth patches: expected key "
                "'Y' (M, N, N) or 'objectGuess' (H, W) as a ground truth, found neither"
            )
        if _uniform(labels):
            # Ptychodus' starting guess is 1+0j everywhere: trained on it, the network
            # learns a flat object without a word.
            raise DataValidationError(
                f"{data.source}: supervised training needs a ground-truth object, found one "
                f"value everywhere ({complex(labels.flat[0]):.3g}); a starting guess is not "
                "a ground truth (train model_type pinn instead, which needs none)"
            )
    probe = normalise_probe(data.probe, training.model.N) if with_probe else None
    return GroupDataset(data.diffraction, groups, labels, probe), groups


def concat_groups(all_groups: Sequence[Groups], sizes: Sequence[int]) -> Groups:
    """Groups of several scans as one, indices counted over the concatenated positions."""
    if len(all_groups) == 1:
        return all_groups[0]
    starts = np.cumsum([0, *sizes[:-1]])
    return Groups(
        indices=np.concatenate([g.indices + s for g, s in zip(all_groups, starts, strict=True)]),
        centres=np.concatenate([g.centres for g in all_groups]),
        offsets=np.concatenate([g.offsets for g in all_groups]),
    )


class ScanDataModule(L.LightningDataModule):
    """Training scan(s) and an optional validation scan, grouped once, as loaders.

    Several scans keep their own positions and probes (groups never mix scans); each scan
    is grouped with seed ``training.seed + k``, the validation scan with the next one.
    """

    def __new__(cls, *args, validation: PtychoData | None = None, **kwargs):
        # Lightning validates when the class defines val_dataloader (an empty list of
        # loaders gets a warning): with a validation scan, the subclass that defines it.
        if cls is ScanDataModule and validation is not None:
            cls = _ScanDataModuleWithValidation
        return super().__new__(cls)

    def __init__(
        self,
        scans: PtychoData | Sequence[PtychoData],
        training: TrainingConfig,
        execution: ExecutionConfig | None = None,
        *,
        validation: PtychoData | None = None,
    ) -> None:
        super().__init__()
        scans = as_scans(scans)
        self.training = training
        self.execution = execution or ExecutionConfig()
        several = len(scans) > 1
        labels = needs_labels(training)
        parts = [
            make_group_dataset(
                s, training, seed=training.seed + k, need_labels=labels, with_probe=several
            )
            for k, s in enumerate(scans)
        ]
        self.train_set: Dataset = (
            parts[0][0] if not several else ConcatDataset([p[0] for p in parts])
        )
        self.groups = concat_groups([p[1] for p in parts], [s.n_positions for s in scans])
        self.val_set: GroupDataset | None = None
        if validation is not None:
            self.val_set, _ = make_group_dataset(
                validation,
                training,
                seed=training.seed + len(scans),
                need_labels=labels,
                with_probe=several,
                for_validation=True,
            )

    @property
    def has_validation(self) -> bool:
        return self.val_set is not None

    def _loader(self, dataset: Dataset, **kw) -> DataLoader:
        workers = self.execution.num_workers
        return DataLoader(
            dataset,
            batch_size=self.training.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            **kw,
        )

    def train_dataloader(self) -> DataLoader:
        # Seeded by (seed, epoch): a resumed run visits the groups in the same order.
        sampler = EpochShuffle(len(self.train_set), self.training.seed)
        return self._loader(self.train_set, sampler=sampler, drop_last=False)


class _ScanDataModuleWithValidation(ScanDataModule):
    """A :class:`ScanDataModule` built with a validation scan (made by its ``__new__``)."""

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
