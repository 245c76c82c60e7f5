"""Self-augmentation: mirrored copies of the first reconstruction, and the two-stage run."""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.data.simulate.diffraction import simulate_diffraction
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ConfigError
from ptychopinn.workflows import self_augment
from ptychopinn.workflows import train as train_module
from ptychopinn.workflows.train import train


def _symmetric_scan(obj: np.ndarray, probe: np.ndarray) -> PtychoData:
    """Noise-free patterns (not counts) on integer positions symmetric about the canvas
    centre, so a copy mirrored about the scan centre is the mirrored canvas scanned alike."""
    centre = (obj.shape[0] - 1) / 2
    grid = centre + np.arange(-12, 13, 6, dtype=np.float64)
    x, y = (a.ravel() for a in np.meshgrid(grid, grid))
    counts, scaled = simulate_diffraction(obj, probe, x, y, nphotons=1e4, poisson=False)
    return PtychoData(np.sqrt(counts), x, y, scaled, object=obj)


@pytest.mark.parametrize(
    "kind, mirror",
    [("left-right", np.fliplr), ("up-down", np.flipud), ("rotated 180 degrees", np.rot90)],
)
def test_a_mirrored_copy_is_the_mirrored_object_scanned_alike(kind, mirror):
    ref = simulate_dataset(N=32, object_size=81, step=6, seed=3)
    obj = ref.object
    scan = _symmetric_scan(obj, ref.probe)
    flipped = np.rot90(obj, 2) if mirror is np.rot90 else mirror(obj)
    expected = _symmetric_scan(np.ascontiguousarray(flipped), ref.probe)
    copy = self_augment.mirrored_copy(scan, obj, kind, seed=0)
    np.testing.assert_allclose(copy.diffraction, expected.diffraction, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(copy.xcoords, scan.xcoords)
    # the same dose, and no Poisson noise drawn on patterns that are not counts
    np.testing.assert_allclose((copy.diffraction**2).sum(), (scan.diffraction**2).sum(), rtol=1e-4)


def test_copies_of_counts_are_counts_at_the_same_dose(tiny_scan):
    copies = self_augment.mirrored_copies([tiny_scan], [tiny_scan.object], 3, seed=1)
    assert [c.metadata["self_augmentation"] for c in copies] == list(self_augment.MIRRORS)
    for copy in copies:
        counts = copy.diffraction.astype(np.float64) ** 2
        np.testing.assert_allclose(counts, counts.round(), atol=1e-3)  # Poisson draws
        ratio = counts.sum() / (tiny_scan.diffraction.astype(np.float64) ** 2).sum()
        assert 0.97 < ratio < 1.03


def test_stage_epochs_keep_about_the_same_steps():
    assert self_augment.stage_epochs(30, 3) == (8, 6)  # 8 + 6 x 4 = 32 scan-epochs
    assert self_augment.stage_epochs(50, 3) == (12, 10)
    assert self_augment.stage_epochs(1, 3) == (1, 1)


def test_self_augmented_training_runs_both_stages_and_resumes_the_second(tiny_scan, tmp_path):
    cfg = dict(model=ModelConfig(N=32), output_dir=str(tmp_path), self_augmentation=2)
    ex = ExecutionConfig(accelerator="cpu", logger="csv", enable_progress_bar=False)
    result = train(tiny_scan, TrainingConfig(nepochs=6, **cfg), ex)  # stages of 2 and 1 epochs
    objects = tmp_path / "first_stage" / self_augment.OBJECTS_FILE
    assert objects.is_file() and (tmp_path / "first_stage" / "checkpoints" / "last.ckpt").exists()
    assert result.trainer.current_epoch == 1
    # the final model trained on the scan and its two copies
    per_scan = len(result.groups.indices) // 3
    assert len(result.groups.indices) == 3 * per_scan
    assert result.groups.indices.max() >= 2 * tiny_scan.n_positions
    stamp = objects.stat().st_mtime_ns
    # A checkpoint of the second stage resumes it, with no new first stage.
    resumed = train(
        tiny_scan,
        TrainingConfig(nepochs=10, **cfg),  # stages of 2 and 3 epochs
        ex,
        resume_from=tmp_path / "checkpoints" / "last.ckpt",
    )
    assert resumed.trainer.current_epoch == 3
    assert objects.stat().st_mtime_ns == stamp
    # A first-stage checkpoint taken after its last epoch (an interruption while the copies
    # were made) resumes too: the objects and the second stage are made again.
    again = train(
        tiny_scan,
        TrainingConfig(nepochs=6, **cfg),
        ex,
        resume_from=tmp_path / "first_stage" / "checkpoints" / "last.ckpt",
    )
    assert again.trainer.current_epoch == 1 and objects.stat().st_mtime_ns != stamp
    objects.unlink()
    with pytest.raises(ConfigError, match="first_objects.npz.*missing"):
        train(
            tiny_scan,
            TrainingConfig(nepochs=14, **cfg),
            ex,
            resume_from=tmp_path / "checkpoints" / "last.ckpt",
        )


def test_self_augmentation_is_checked():
    with pytest.raises(ConfigError, match="self_augmentation"):
        TrainingConfig(self_augmentation=4)
    with pytest.raises(ConfigError, match="self_augmentation: expected 0 with the tensorflow"):
        TrainingConfig(self_augmentation=1, backend="tensorflow")
    with pytest.raises(ConfigError, match="self_augmentation: expected 0 with probe_trainable"):
        TrainingConfig(self_augmentation=1, probe_trainable=True)


def test_copies_simulated_in_chunks_equal_one_pass(monkeypatch):
    ref = simulate_dataset(N=32, object_size=81, step=6, seed=3)
    scan = _symmetric_scan(ref.object, ref.probe)  # 25 noise-free patterns
    whole = self_augment.mirrored_copy(scan, ref.object, "up-down", seed=5)
    monkeypatch.setattr(self_augment, "SIMULATION_CHUNK", 7)
    chunked = self_augment.mirrored_copy(scan, ref.object, "up-down", seed=5)
    np.testing.assert_allclose(chunked.probe, whole.probe, rtol=1e-6)
    np.testing.assert_allclose(chunked.diffraction, whole.diffraction, rtol=1e-5, atol=1e-5)


def test_copies_that_do_not_fit_in_memory_are_refused_before_training(
    tiny_scan, tmp_path, monkeypatch
):
    need = self_augment.copies_bytes([tiny_scan], 3)
    assert need == 3 * tiny_scan.n_positions * tiny_scan.N**2 * 4
    self_augment.check_copies_fit([tiny_scan], 3, available=None)  # unknown: not checked
    self_augment.check_copies_fit([tiny_scan], 3, available=4 * need)
    with pytest.raises(ConfigError, match=r"self_augmentation: 3 mirrored copies .* GiB"):
        self_augment.check_copies_fit([tiny_scan], 3, available=need)
    with pytest.raises(ConfigError, match=r"2 training processes"):  # DDP: copies per process
        self_augment.check_copies_fit([tiny_scan], 3, available=3 * need, processes=2)
    # train() checks before its first stage: nothing trained, nothing written there
    monkeypatch.setattr(train_module, "available_memory_bytes", lambda: need)
    cfg = TrainingConfig(model=ModelConfig(N=32), output_dir=str(tmp_path), self_augmentation=3)
    with pytest.raises(ConfigError, match="self_augmentation"):
        train(tiny_scan, cfg, ExecutionConfig(accelerator="cpu", logger="csv"))
    assert not (tmp_path / self_augment.FIRST_STAGE_DIR).exists()
