"""Training orchestration: dataset → groups → Lightning fit → trained module."""

from __future__ import annotations

import csv
import dataclasses
import logging
import shutil
import signal
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np

from ptychopinn.atomic import atomic_write
from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig, from_dict, to_dict
from ptychopinn.data.grouping import Groups
from ptychopinn.data.types import PtychoData, evenly_spaced_index, require_scan
from ptychopinn.errors import ConfigError, DataValidationError, TrainingInterrupted
from ptychopinn.model.lightning_module import PINNLightningModule
from ptychopinn.model.pinn import initial_intensity_scale, mean_pattern_energy, normalise_probe
from ptychopinn.model.state_check import read_checkpoint, require_matching_state
from ptychopinn.physics.thinning import look_like_counts
from ptychopinn.physics.twin import TWIN_SYMMETRIC, twin_symmetry
from ptychopinn.system_memory import available_memory_bytes
from ptychopinn.workflows.datamodule import ScanDataModule, as_scans
from ptychopinn.workflows.execution import build_trainer, resolve_device

log = logging.getLogger(__name__)

#: Training scans whose mean counts per pattern differ by more than this get a warning.
MAX_DOSE_SPREAD = 10.0


@dataclass
class TrainResult:
    """What a training run leaves behind."""

    module: PINNLightningModule
    trainer: L.Trainer
    groups: Groups
    output_dir: Path


def subsample(data: PtychoData, n_subsample: int | None, seed: int | None) -> PtychoData:
    """Keep ``n_subsample`` random scan positions (all when None or larger than the scan)."""
    if n_subsample is None or n_subsample >= data.n_positions:
        return data
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(data.n_positions, size=n_subsample, replace=False))
    return data.subset(keep)


def scan_energies(scans: Sequence[PtychoData]) -> list[float]:
    """Each scan's mean total count per pattern (sampled: a memory map is not read whole)."""
    return [mean_pattern_energy(s.diffraction) for s in scans]


def mean_energy_of(scans: Sequence[PtychoData], energies: Sequence[float]) -> float:
    """Mean total count per pattern over all the scans' patterns."""
    return float(np.average(energies, weights=[s.n_positions for s in scans]))


def initial_scale_and_energy(
    scans: Sequence[PtychoData], N: int, energies: Sequence[float] | None = None
) -> tuple[float, float]:
    """The initial intensity scale (for the first scan's probe) and the reference dose (mean
    counts per pattern over all the scans), for a model of either backend."""
    probe = normalise_probe(scans[0].probe, N)
    energy = mean_energy_of(scans, scan_energies(scans) if energies is None else energies)
    # One scan: its exact mean over every pattern; several: the sampled, weighted mean.
    scale = initial_intensity_scale(
        scans[0].diffraction, probe, mean_energy=energy if len(scans) > 1 else None
    )
    return scale, energy


def build_module(
    data: PtychoData | Sequence[PtychoData],
    training: TrainingConfig,
    execution: ExecutionConfig,
    *,
    energies: Sequence[float] | None = None,
) -> PINNLightningModule:
    """A fresh module whose probe (the first scan's) and intensity scale (all the scans'
    mean pattern energy) come from the training data; ``energies`` are the scans'
    :func:`scan_energies` when the caller has them already."""
    scans = as_scans(data)
    scale, energy = initial_scale_and_energy(scans, training.model.N, energies)
    return PINNLightningModule.from_configs(
        training, execution, intensity_scale=scale, probe=scans[0].probe, reference_energy=energy
    )


def check_several_scans(
    training: TrainingConfig, scans: Sequence[PtychoData], energies: Sequence[float]
) -> None:
    """Several training scans: one probe cannot be learned for all; doses (the scans'
    :func:`scan_energies`) should be alike."""
    if len(scans) < 2:
        return
    if training.probe_trainable:
        raise ConfigError(
            "probe_trainable: expected false when training on several scans (each keeps its "
            f"own probe; {len(scans)} scans given), found true"
        )
    if max(energies) > MAX_DOSE_SPREAD * min(energies):
        low, high = int(np.argmin(energies)), int(np.argmax(energies))
        warnings.warn(
            f"training scans differ in dose by {max(energies) / min(energies):.0f}x "
            f"({scans[low].source}: {energies[low]:.3g}, {scans[high].source}: "
            f"{energies[high]:.3g} counts per pattern); the network sees them at one "
            "intensity scale",
            stacklevel=3,
        )


def check_resume(resume_from: str | Path, nepochs: int, model: ModelConfig | None = None) -> dict:
    """The checkpoint to resume from, read safely; refuses ``nepochs`` it has already reached.

    ``nepochs`` is the total number of epochs, so it must exceed the checkpoint's epoch.
    Given ``model``, also refuses a checkpoint trained with other model settings (weights of
    the same shape can belong to another N or grouping, which would train on silently).
    """
    ckpt = read_checkpoint(resume_from)
    epoch = int(ckpt.get("epoch", 0) or 0)
    if nepochs <= epoch:
        raise ConfigError(
            f"nepochs: {resume_from} was saved at epoch {epoch + 1}; nepochs is the total "
            f"number of epochs, so ask for more than {epoch + 1} (found {nepochs})"
        )
    saved = (ckpt.get("hyper_parameters") or {}).get("model_config")
    if model is not None and isinstance(saved, Mapping):
        refuse_other_model_settings(saved, model, resume_from)
    return ckpt


def refuse_other_model_settings(
    saved: Mapping, model: ModelConfig, resume_from: str | Path
) -> None:
    """One message naming each setting in which ``model`` differs from the checkpoint's
    ``saved`` model settings (compared as the checkpoint's module rebuilds them: legacy keys
    renamed, defaults filled in)."""
    trained = to_dict(from_dict(ModelConfig, saved, source=f"{resume_from}: model_config"))
    differ = [
        f"{name}={trained[name]!r} (this run: {value!r})"
        for name, value in to_dict(model).items()
        if trained[name] != value
    ]
    if differ:
        raise ConfigError(
            f"resume_from: {resume_from} was trained with other model settings: "
            f"{', '.join(differ)}; resume with the settings it was trained with (its "
            "resolved_config.yaml), or train afresh"
        )


def _read_metrics(path: Path) -> tuple[list[str], list[dict]]:
    if not path.is_file():
        return [], []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def keep_metrics_history(path: Path, earlier: tuple[list[str], list[dict]]) -> None:
    """Put the epochs of an earlier ``metrics.csv`` that the resumed run did not repeat back
    in front of its rows (Lightning's CSV logger starts the file afresh)."""
    old_fields, old_rows = earlier
    if not old_rows:
        return
    new_fields, new_rows = _read_metrics(path)
    new_epochs = [e for e in map(_epoch, new_rows) if e is not None]
    resumed_at = min(new_epochs) if new_epochs else float("inf")
    kept = [r for r in old_rows if _epoch(r) is not None and _epoch(r) < resumed_at]
    fields = list(dict.fromkeys([*old_fields, *new_fields]))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows([*kept, *new_rows])

    atomic_write(path, write)


def _epoch(row: dict) -> int | None:
    try:
        return int(float(row.get("epoch", "")))
    except ValueError:
        return None


def fit_interruptibly(trainer, module, datamodule, resume_from, output_dir) -> None:
    """``trainer.fit(module, datamodule)``, turning Lightning's exit on Ctrl-C into
    :class:`TrainingInterrupted`.

    A checkpoint to resume from is checked first, so a missing file or weights of another
    configuration stop with one message naming the file (and no ``interrupted.ckpt``).
    """
    earlier: tuple[list[str], list[dict]] = ([], [])
    metrics_csv = Path(output_dir) / "logs" / "metrics.csv"
    if resume_from:
        ckpt = check_resume(resume_from, trainer.max_epochs, module.model_config)
        require_matching_state(module.state_dict(), ckpt["state_dict"], str(resume_from))
        earlier = _read_metrics(metrics_csv)
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None
        )
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Point at the last complete epoch when there is one: Lightning itself calls a
        # mid-epoch checkpoint unreliable to resume from.
        checkpoints = Path(output_dir) / "checkpoints"
        last, interrupted = checkpoints / "last.ckpt", checkpoints / "interrupted.ckpt"
        ckpt = last if last.exists() else interrupted
        hint = f"; resume with --resume_from {ckpt}" if ckpt.exists() else ""
        raise TrainingInterrupted(
            f"training interrupted at epoch {trainer.current_epoch}{hint}"
        ) from None
    else:
        if resume_from and trainer.is_global_zero:
            # The run finished: an earlier Ctrl-C's checkpoint would only point back in time.
            (Path(output_dir) / "checkpoints" / "interrupted.ckpt").unlink(missing_ok=True)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning leaves SIGINT ignored
        if resume_from:
            keep_metrics_history(metrics_csv, earlier)


def set_aside_old_checkpoints(output_dir: Path) -> Path | None:
    """A fresh run must not leave an earlier run's ``best-*.ckpt`` next to its own: the old
    ``checkpoints/`` becomes ``checkpoints.previous/`` (replacing an older one), so nothing
    is lost by re-training into a directory by mistake."""
    ckpts = Path(output_dir) / "checkpoints"
    if not ckpts.is_dir() or not any(ckpts.iterdir()):
        return None
    previous = ckpts.with_name("checkpoints.previous")
    if previous.exists():
        shutil.rmtree(previous)
    ckpts.rename(previous)
    log.warning(
        "%s holds checkpoints of an earlier run; moved to %s (resume with --resume_from)",
        ckpts,
        previous,
    )
    return previous


def check_dose_augmentation(
    training: TrainingConfig, scans: Sequence[PtychoData]
) -> TrainingConfig:
    """``training``, with dose augmentation off (and a warning naming the scan) when a scan's
    squared amplitudes are not photon counts: thinning needs counts to be exact."""
    if training.dose_augmentation <= 0:
        return training
    for scan in scans:
        sample = scan.diffraction[evenly_spaced_index(scan.n_positions, 64)]
        if not look_like_counts(sample):
            log.warning(
                "%s: the squared amplitudes are not whole photon counts, so they cannot be "
                "thinned to a lower dose; dose_augmentation is off for this run",
                scan.source,
            )
            return dataclasses.replace(training, dose_augmentation=0.0)
    return training


def warn_twin_symmetric_probes(scans: Sequence[PtychoData]) -> None:
    """A warning naming each scan whose probe equals its own twin (:mod:`ptychopinn.physics.
    twin`): the network that reads one pattern per pass cannot learn half of such a scan's
    object, which only the overlap between positions determines."""
    for scan in scans:
        symmetry = twin_symmetry(scan.probe)
        if symmetry > TWIN_SYMMETRIC:
            log.warning(
                "%s: the probe is centrosymmetric with a flat phase (twin symmetry %.3f, "
                "above %.2f), so a single pattern cannot tell the object from its twin (turned "
                "by 180 degrees, phase negated) and the network will reconstruct it poorly; "
                "a defocused probe avoids this, and ptycho_inference refines such results "
                "by default (--refine auto)",
                scan.source,
                symmetry,
                TWIN_SYMMETRIC,
            )


def check_scan_sizes(
    training: TrainingConfig,
    train_data: PtychoData | Sequence[PtychoData],
    test_data: PtychoData | None = None,
) -> None:
    """Training and validation patterns must have the model's size N (one message if not)."""
    for scan in as_scans(train_data):
        if scan.N != training.model.N:
            raise DataValidationError(
                f"{scan.source}: diffraction patterns are {scan.N}x{scan.N} but the model "
                f"config says N={training.model.N}; set N={scan.N} (every training file must "
                "have the same pattern size)"
            )
    if test_data is not None and require_scan(test_data, "test_data").N != training.model.N:
        raise DataValidationError(
            f"{test_data.source}: validation patterns are {test_data.N}x{test_data.N} but the "
            f"model trains on N={training.model.N}; give a validation scan of the same size"
        )


def train(
    train_data: PtychoData | Sequence[PtychoData],
    training: TrainingConfig,
    execution: ExecutionConfig | None = None,
    *,
    test_data: PtychoData | None = None,
    resume_from: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> TrainResult:
    """Train a model on ``train_data`` (one scan or several); validate on ``test_data``.

    Several scans must share N; each keeps its own probe and positions (groups never mix
    scans), ``n_subsample``/``n_groups`` apply to each scan, and the archive keeps the
    first scan's probe.

    ``resume_from`` continues from a Lightning checkpoint (optimizer state and epoch
    included); ``nepochs`` is then the total, not the additional, number of epochs.

    With ``self_augmentation`` the training has two stages (:mod:`.self_augment`): the first
    (checkpoints in ``output_dir/first_stage``) reconstructs the scans, the second trains the
    returned model on them and their mirrored copies; a checkpoint of either stage resumes.
    """
    if training.backend != "pytorch":
        raise ConfigError(
            f"backend: this function trains the pytorch backend, found {training.backend!r}; "
            "train the TensorFlow twin with ptychopinn.tf_backend.train.train (or "
            "ptycho_train --backend tensorflow)"
        )
    execution = execution or ExecutionConfig()
    output_dir = Path(output_dir or training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_scan_sizes(training, train_data, test_data)
    if not resume_from:
        set_aside_old_checkpoints(output_dir)
    scans = [
        subsample(s, training.n_subsample, training.subsample_seed) for s in as_scans(train_data)
    ]
    # Once, on the measured scans (not per stage, nor on self-augmentation's copies).
    warn_twin_symmetric_probes(scans)
    if training.self_augmentation:
        scans, training, resume_from = _first_stage(
            scans, training, execution, resume_from, output_dir
        )
    return _fit(scans, training, execution, test_data, resume_from, output_dir)


def _first_stage(
    scans: list[PtychoData],
    training: TrainingConfig,
    execution: ExecutionConfig,
    resume_from: str | Path | None,
    output_dir: Path,
) -> tuple[list[PtychoData], TrainingConfig, str | Path | None]:
    """Run (or skip, when resuming the second stage) the first stage of a self-augmented
    training: the scans with their mirrored copies, the second stage's config, and the
    checkpoint the second stage resumes from (None: it starts afresh)."""
    from ptychopinn.workflows import self_augment

    copies = training.self_augmentation
    # Each DDP process on this node builds its own copies.
    self_augment.check_copies_fit(
        scans, copies, available_memory_bytes(), processes=execution.devices
    )
    first_epochs, second_epochs = self_augment.stage_epochs(training.nepochs, copies)
    first_dir = output_dir / self_augment.FIRST_STAGE_DIR
    objects_file = first_dir / self_augment.OBJECTS_FILE
    in_first_dir = bool(resume_from) and first_dir.resolve() in Path(resume_from).resolve().parents
    if resume_from and not in_first_dir:
        if not objects_file.is_file():
            raise ConfigError(
                f"resume_from: {resume_from} is not a checkpoint of the first stage "
                f"({first_dir}) and {objects_file}, which the second stage is made from, is "
                "missing; resume from a checkpoint of this run's output_dir"
            )
        log.info("resuming the second stage; first objects read from %s", objects_file)
        objects = self_augment.load_objects(objects_file, len(scans))
    else:
        if not resume_from:
            set_aside_old_checkpoints(first_dir)
        log.info(
            "self-augmentation: %d epoch(s) on the measured scan(s), then %d on them and %d "
            "mirrored copies of each",
            first_epochs,
            second_epochs,
            copies,
        )
        first_config = dataclasses.replace(training, nepochs=first_epochs, self_augmentation=0)
        first = _fit(scans, first_config, execution, None, resume_from or None, first_dir)
        device = resolve_device(execution.accelerator)
        objects = self_augment.first_objects(
            first.module.model, scans, device=device, progress=execution.enable_progress_bar
        )
        self_augment.save_objects(objects_file, objects)
        resume_from = None
    mirrored = self_augment.mirrored_copies(scans, objects, copies, seed=training.seed)
    second = dataclasses.replace(training, nepochs=second_epochs)
    return scans + mirrored, second, resume_from


def _fit(
    scans: list[PtychoData],
    training: TrainingConfig,
    execution: ExecutionConfig,
    test_data: PtychoData | None,
    resume_from: str | Path | None,
    output_dir: Path,
) -> TrainResult:
    """One Lightning fit from fresh weights (or ``resume_from``) on ``scans``."""
    L.seed_everything(training.seed, workers=True, verbose=False)
    energies = scan_energies(scans)
    check_several_scans(training, scans, energies)
    training = check_dose_augmentation(training, scans)
    datamodule = ScanDataModule(scans, training, execution, validation=test_data)
    module = build_module(scans, training, execution, energies=energies)
    monitor = module.val_loss_name if datamodule.has_validation else f"{module.loss_name}_epoch"
    trainer = build_trainer(execution, training, output_dir=output_dir, monitor=monitor)
    log.info(
        "training on %d groups of %d positions (%d scan positions in %d scan%s), "
        "intensity scale %.4g",
        len(datamodule.train_set),
        datamodule.groups.C,
        sum(s.n_positions for s in scans),
        len(scans),
        "s" if len(scans) > 1 else "",
        float(module.model.intensity_scale.detach()),
    )
    fit_interruptibly(trainer, module, datamodule, resume_from, output_dir)
    return TrainResult(
        module=module, trainer=trainer, groups=datamodule.groups, output_dir=output_dir
    )
