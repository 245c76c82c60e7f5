"""The one LightningDataModule: scans + training config -> the loaders every caller fits with."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from ptychopinn.config import ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.data.types import OBJECT_IS_TRUTH_KEY
from ptychopinn.errors import ConfigError, DataValidationError
from ptychopinn.workflows.datamodule import ScanDataModule, groups_for


@pytest.fixture(scope="module")
def scans():
    sim = dict(N=32, object_size=64, step=8, nphotons=1e5)
    # Two probes of different shape (the same probe at another scale normalises to one).
    other = simulate_dataset(seed=2, object_seed=5, probe_diameter=9.0, **sim)
    return simulate_dataset(seed=1, **sim), other


def _config(**kw) -> TrainingConfig:
    return TrainingConfig(model=ModelConfig(N=32, **kw.pop("model", {})), batch_size=4, **kw)


def _first_batch(dm: ScanDataModule, epoch: int) -> torch.Tensor:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return next(iter(loader))["amplitudes"]


def test_order_depends_on_seed_and_epoch_only(scans):
    a, b = ScanDataModule(scans[0], _config()), ScanDataModule(scans[0], _config())
    torch.manual_seed(123)  # the global RNG must not matter (a resumed run does not keep it)
    first = _first_batch(a, 3)
    torch.manual_seed(999)
    assert torch.equal(first, _first_batch(b, 3))
    assert not torch.equal(first, _first_batch(b, 4))


def test_validation_only_when_a_scan_is_given(scans):
    from lightning.pytorch.utilities.model_helpers import is_overridden

    dm = ScanDataModule(scans[0], _config())
    # Lightning runs validation when the datamodule defines val_dataloader
    assert not dm.has_validation and not is_overridden("val_dataloader", dm)
    with_val = ScanDataModule(scans[0], _config(), validation=scans[1])
    assert with_val.has_validation and is_overridden("val_dataloader", with_val)
    batch = next(iter(with_val.val_dataloader()))
    assert batch["amplitudes"].shape[1:] == (4, 32, 32)


def test_several_scans_keep_their_own_probes_and_positions(scans):
    dm = ScanDataModule(list(scans), _config())
    sizes = [len(d) for d in dm.train_set.datasets]
    assert len(dm.train_set) == sum(sizes) and dm.groups.G == sum(sizes)
    probes = {
        dm.train_set[0]["probe"].abs().sum().item(),
        dm.train_set[-1]["probe"].abs().sum().item(),
    }
    assert len(probes) == 2  # each scan's own probe rides with its groups
    # group indices count over the concatenated positions, never mixing scans
    first_scan = dm.groups.indices[: sizes[0]]
    assert first_scan.max() < scans[0].n_positions <= dm.groups.indices[sizes[0] :].min()


def test_labels_only_when_a_loss_needs_them(scans):
    pinn = ScanDataModule(scans[0], _config())
    assert "labels" not in pinn.train_set[0]
    supervised = ScanDataModule(scans[0], _config(model={"model_type": "supervised"}))
    assert supervised.train_set[0]["labels"].shape == (4, 32, 32)
    # an object that is not a ground truth (a Ptychodus product's guess) is no label source
    guess = dataclasses.replace(scans[0], labels=None, metadata={OBJECT_IS_TRUTH_KEY: False})
    with pytest.raises(DataValidationError, match="ground-truth patches"):
        ScanDataModule(guess, _config(realspace_weight=1.0))


def test_groups_per_position_follows_each_scans_positions(scans):
    """``groups_per_position`` scales with every scan's own M; ``n_groups`` wins when set."""
    m0, m1 = scans[0].n_positions, scans[1].n_positions
    assert len(ScanDataModule(scans[0], _config()).train_set) == 2 * m0  # the default
    assert len(ScanDataModule(scans[0], _config(groups_per_position=1)).train_set) == m0
    three = ScanDataModule(list(scans), _config(groups_per_position=3, neighbor_count=7))
    assert [len(d) for d in three.train_set.datasets] == [3 * m0, 3 * m1]
    validated = ScanDataModule(scans[0], _config(groups_per_position=3), validation=scans[1])
    assert len(validated.val_set) == m1  # validation: one group per position
    # the extra groups are distinct member sets, not repeats of the first draw
    first = three.groups.indices[: 3 * m0]
    assert len(np.unique(np.sort(first, axis=1), axis=0)) > 2 * m0
    half = ScanDataModule(scans[0], _config(groups_per_position=0.5))
    assert len(half.train_set) == round(0.5 * m0)
    fixed = ScanDataModule(scans[0], _config(groups_per_position=3, n_groups=10))
    assert len(fixed.train_set) == 10
    # groups of one position cannot differ: gridsize 1 keeps one per position, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = ScanDataModule(scans[0], _config(groups_per_position=3, model={"gridsize": 1}))
    assert len(single.train_set) == m0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_groups_per_position_must_be_a_positive_count(bad):
    with pytest.raises(ConfigError, match="groups_per_position"):
        _config(groups_per_position=bad)


def test_groups_per_position_stops_at_the_distinct_groups_of_a_small_scan(caplog):
    """Five positions have 5 * C(4, 3) = 20 different groups of 4: 7 per position (35) is
    trimmed to those, quietly (no n_groups was asked for explicitly)."""
    from ptychopinn.data.grouping import group_positions

    training = _config(groups_per_position=7)
    assert groups_for(training, 5) == 20
    assert groups_for(training, 100) == 700
    coords = np.array([[0, 0], [5, 0], [0, 5], [5, 5], [10, 10]], dtype=float)
    with caplog.at_level("WARNING"):
        groups = group_positions(
            coords, 2, neighbor_count=7, n_groups=groups_for(training, 5), seed=0
        )
    assert groups.G == 20 and not caplog.records
    anchored = np.concatenate([groups.indices[:, :1], np.sort(groups.indices[:, 1:], axis=1)], 1)
    # anchors beyond one per position are drawn with replacement, so nearly all, not all
    assert len(np.unique(anchored, axis=0)) >= 17
