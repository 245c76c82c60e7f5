"""Training with the TensorFlow backend: a ``tf.function`` step inside a plain epoch loop.

Shared with the PyTorch backend: the scans, subsampling, grouping and the seeded epoch
shuffle (:class:`~ptychopinn.workflows.datamodule.ScanDataModule`), the initial intensity
scale and reference dose, the learning-rate schedule (:mod:`ptychopinn.model.schedule`) and
the loss definitions. Written to ``output_dir``: ``checkpoints/last.h5`` after every epoch
(weights, optimiser state, epoch and step, one HDF5 file read without executing code),
``checkpoints/interrupted.h5`` on Ctrl-C, and ``logs/metrics.csv`` with the columns the
PyTorch runs log (``epoch``, ``step``, ``lr-Adam``, ``train_loss_epoch``, ``val_loss``, ...),
so the loss curve and the MLflow-free tooling read both.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ptychopinn.atomic import atomic_write
from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig, to_dict
from ptychopinn.data.grouping import Groups
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ArchiveError, ConfigError, TrainingInterrupted
from ptychopinn.model import schedule
from ptychopinn.physics.thinning import batch_seed
from ptychopinn.progress import Progress
from ptychopinn.tf_backend import import_tensorflow
from ptychopinn.tf_backend import physics as tfp
from ptychopinn.tf_backend.model import TFPtychoPINN
from ptychopinn.workflows.datamodule import ScanDataModule, as_scans
from ptychopinn.workflows.train import (
    check_dose_augmentation,
    check_scan_sizes,
    check_several_scans,
    initial_scale_and_energy,
    refuse_other_model_settings,
    scan_energies,
    set_aside_old_checkpoints,
    subsample,
    warn_twin_symmetric_probes,
)

tf = import_tensorflow()
import keras  # noqa: E402

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ptychopinn-tensorflow-checkpoint"
#: What this backend runs; "auto" is float32 here (no bfloat16 path).
PRECISIONS = ("auto", "32-true", "32")
LOGGERS = ("csv", "none")
#: Torch's Adam epsilon (Keras defaults to 1e-7).
ADAM_EPSILON = 1e-8
#: ``plateau``: halve the rate after this many epochs without a lower loss.
PLATEAU_PATIENCE, PLATEAU_FACTOR = 3, 0.5


@dataclass
class TFTrainResult:
    """What a TensorFlow training run leaves behind."""

    model: TFPtychoPINN
    groups: Groups
    output_dir: Path
    epochs: int


def check_execution(execution: ExecutionConfig) -> None:
    """Refuse, with one message each, execution settings this backend does not implement."""
    problems = []
    if execution.devices != 1:
        problems.append(
            f"devices: expected 1 (multi-device training is the pytorch backend's DDP), "
            f"found {execution.devices}"
        )
    if execution.precision not in PRECISIONS:
        problems.append(f"precision: expected auto or 32-true, found {execution.precision!r}")
    if execution.logger not in LOGGERS:
        problems.append(
            f"logger: expected csv or none (logs/metrics.csv), found {execution.logger!r}"
        )
    if execution.accumulate_grad_batches != 1:
        problems.append(
            f"accumulate_grad_batches: expected 1, found {execution.accumulate_grad_batches}"
        )
    if problems:
        raise ConfigError(
            "backend 'tensorflow' does not support " + "; ".join(problems) + " (use --backend "
            "pytorch for these)"
        )


def device_name(accelerator: str) -> str:
    """The TensorFlow device for ``accelerator`` (auto: the first GPU when there is one)."""
    gpus = tf.config.list_logical_devices("GPU")
    if accelerator in ("cuda", "gpu"):
        if not gpus:
            raise ConfigError(
                f"accelerator: {accelerator!r} was asked for, but TensorFlow sees no GPU here; "
                "use --torch-accelerator cpu (or install a CUDA build of TensorFlow)"
            )
        return gpus[0].name
    if accelerator == "mps":
        raise ConfigError("accelerator: 'mps' is not available with backend 'tensorflow'")
    if accelerator == "auto" and gpus:
        return gpus[0].name
    return "/CPU:0"


# -- checkpoints ---------------------------------------------------------------------------
def save_checkpoint(
    path: Path, model: TFPtychoPINN, optimizer, epochs_done: int, step: int, plateau: dict
) -> Path:
    """Weights, optimiser variables and progress as one HDF5 file, written atomically."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = CHECKPOINT_FORMAT
            f.attrs["epochs_done"] = epochs_done
            f.attrs["step"] = step
            f.attrs["plateau_best"] = plateau["best"]
            f.attrs["plateau_wait"] = plateau["wait"]
            f.attrs["lr_factor"] = plateau["factor"]
            f.attrs["model_config"] = json.dumps(to_dict(model.config))
            weights = f.create_group("weights")
            for key, value in model.weight_arrays().items():
                weights.create_dataset(key, data=value)
            opt = f.create_group("optimizer")
            for i, var in enumerate(optimizer.variables):
                opt.create_dataset(f"{i:04d}", data=np.asarray(var.numpy()))

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, write)


def read_checkpoint(path: str | Path) -> dict:
    """A TensorFlow checkpoint's contents, or :class:`ArchiveError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: checkpoint not found")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != CHECKPOINT_FORMAT:
                raise ArchiveError(
                    f"{path}: not a tensorflow-backend checkpoint (expected format "
                    f"{CHECKPOINT_FORMAT!r}; a Lightning .ckpt resumes with --backend pytorch)"
                )
            return {
                "epochs_done": int(f.attrs["epochs_done"]),
                "step": int(f.attrs["step"]),
                "plateau": {
                    "best": float(f.attrs["plateau_best"]),
                    "wait": int(f.attrs["plateau_wait"]),
                    "factor": float(f.attrs["lr_factor"]),
                },
                "model_config": _saved_model_config(f, path),
                "weights": {k: v[()] for k, v in f["weights"].items()},
                "optimizer": [f["optimizer"][k][()] for k in sorted(f["optimizer"])],
            }
    except OSError as exc:
        raise ArchiveError(f"{path}: not a readable HDF5 checkpoint ({exc})") from exc


def _saved_model_config(f: h5py.File, path: Path) -> dict | None:
    """The model settings a checkpoint was trained with (None: written before they were
    kept)."""
    text = f.attrs.get("model_config")
    if text is None:
        return None
    try:
        saved = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ArchiveError(f"{path}: model_config is not readable JSON ({exc})") from exc
    if not isinstance(saved, dict):
        raise ArchiveError(f"{path}: model_config: expected a mapping, found {saved!r}")
    return saved


def check_resume(resume_from: str | Path, nepochs: int, model: ModelConfig | None = None) -> dict:
    """The checkpoint to resume from; refuses ``nepochs`` (the total) it has reached and,
    given ``model``, a checkpoint trained with other model settings."""
    ckpt = read_checkpoint(resume_from)
    if nepochs <= ckpt["epochs_done"]:
        raise ConfigError(
            f"nepochs: {resume_from} was saved after epoch {ckpt['epochs_done']}; nepochs is "
            f"the total number of epochs, so ask for more than {ckpt['epochs_done']} "
            f"(found {nepochs})"
        )
    if model is not None and ckpt["model_config"] is not None:
        refuse_other_model_settings(ckpt["model_config"], model, resume_from)
    return ckpt


def _restore_optimizer(optimizer, variables, saved: list[np.ndarray], source: str) -> None:
    optimizer.build(variables)
    current = optimizer.variables
    shapes = [tuple(v.shape) for v in current]
    if len(saved) != len(current) or any(
        tuple(s.shape) != shape for s, shape in zip(saved, shapes, strict=False)
    ):
        raise ArchiveError(
            f"{source}: optimiser state does not fit this model ({len(saved)} saved variables, "
            f"{len(current)} expected); resume with the configuration it was trained with"
        )
    for var, value in zip(current, saved, strict=True):
        var.assign(value)


# -- the loop ------------------------------------------------------------------------------
def _batch_arrays(batch: dict) -> dict:
    out = {"amplitudes": batch["amplitudes"].numpy(), "offsets": batch["offsets"].numpy()}
    for key in ("probe", "labels"):
        if key in batch:
            out[key] = batch[key].numpy()
    return out


class Losses:
    """The weighted loss terms of one batch, as the PyTorch module defines them."""

    def __init__(self, model: TFPtychoPINN, training: TrainingConfig, canvas_size: int):
        self.model, self.cfg, self.canvas_size = model, training, canvas_size
        self.supervised = training.model.model_type == "supervised"
        self.rng = tf.random.Generator.from_seed(training.seed)

    def seed_batch(self, step: int) -> None:
        """Seed the dose augmentation of training step ``step`` from its place in the run,
        so that a resumed run thins as an uninterrupted one."""
        if self.cfg.dose_augmentation > 0:
            self.rng.reset_from_seed(batch_seed(self.cfg.seed, step))

    def thinned(self, counts):
        """Dose augmentation as the PyTorch module does it (``_thinned``): the network
        input, the thinned counts and the kept fraction per group (B, 1, 1, 1)."""
        cfg = self.cfg
        batch = tf.shape(counts)[:1]
        chosen = self.rng.uniform(batch) < cfg.dose_augmentation
        fractions = tf.exp(self.rng.uniform(batch) * math.log(cfg.dose_augmentation_min))
        keep = tf.where(chosen, fractions, tf.ones_like(fractions))[:, None, None, None]
        # Only the chosen groups are drawn (the others are kept whole): half the draws.
        rows = tf.where(chosen)
        whole = tf.maximum(tf.round(tf.gather_nd(counts, rows)), 0.0)
        probs = tf.broadcast_to(tf.gather_nd(keep, rows), tf.shape(whole))
        drawn = self.rng.binomial(tf.shape(whole), counts=whole, probs=probs, dtype=tf.float32)
        counts = tf.tensor_scatter_nd_update(counts, rows, drawn)
        return tf.sqrt(counts / keep), counts, keep

    def __call__(self, amplitudes, offsets, probe, labels, training: bool) -> dict:
        cfg, model = self.cfg, self.model
        terms = {}
        if self.supervised:
            patches = model.predict_patches(amplitudes, None, training=training)
            terms["realspace_mae"] = tfp.realspace_mae(patches, labels)
        else:
            measured, keep = tf.square(amplitudes), None
            if training and cfg.dose_augmentation > 0:
                amplitudes, measured, keep = self.thinned(measured)
            patches, amp = model(
                amplitudes, offsets, probe, training=training, canvas_size=self.canvas_size
            )
            if cfg.nll_weight > 0:
                pred = tf.square(amp) if keep is None else tf.square(amp) * keep
                terms["poisson_nll"] = cfg.nll_weight * tfp.poisson_deviance(pred, measured)
            if cfg.mae_weight > 0:
                terms["mae"] = cfg.mae_weight * tfp.amplitude_mae(amp, amplitudes)
            if labels is not None and cfg.realspace_mae_weight > 0:
                terms["realspace_mae"] = cfg.realspace_mae_weight * tfp.realspace_mae(
                    patches, labels
                )
            if labels is not None and cfg.realspace_weight > 0:
                terms["realspace_mse"] = cfg.realspace_weight * tf.reduce_mean(
                    tf.square(tf.abs(patches - labels))
                )
        terms["loss"] = tf.add_n(list(terms.values()))
        return terms


def make_steps(losses: Losses, optimizer, variables):
    """Compiled ``(train_step, eval_step)``, each ``(amplitudes, offsets, probe, labels) ->
    loss terms``; the training step also applies the optimiser."""

    @tf.function(reduce_retracing=True)
    def train_step(amplitudes, offsets, probe, labels):
        with tf.GradientTape() as tape:
            terms = losses(amplitudes, offsets, probe, labels, training=True)
        grads = tape.gradient(terms["loss"], variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return terms

    @tf.function(reduce_retracing=True)
    def eval_step(amplitudes, offsets, probe, labels):
        return losses(amplitudes, offsets, probe, labels, training=False)

    return train_step, eval_step


def make_optimizer(training: TrainingConfig):
    """Adam as the PyTorch backend configures it (epsilon, gradient-norm clipping)."""
    return keras.optimizers.Adam(
        learning_rate=training.learning_rate,
        epsilon=ADAM_EPSILON,
        global_clipnorm=training.gradient_clip_val,
    )


def _write_metrics(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def _earlier_rows(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) < before_epoch]


def _plateau_update(state: dict, epoch_loss: float) -> None:
    if epoch_loss < state["best"]:
        state["best"], state["wait"] = epoch_loss, 0
        return
    state["wait"] += 1
    if state["wait"] > PLATEAU_PATIENCE:
        state["factor"] *= PLATEAU_FACTOR
        state["wait"] = 0


def build_model(
    scans: Sequence[PtychoData], training: TrainingConfig, energies: Sequence[float]
) -> TFPtychoPINN:
    """A fresh model: the first scan's probe, the scans' mean dose as the intensity scale."""
    scale, energy = initial_scale_and_energy(scans, training.model.N, energies)
    return TFPtychoPINN(
        training.model,
        np.asarray(scans[0].probe),
        scale,
        probe_trainable=training.probe_trainable,
        intensity_scale_trainable=training.intensity_scale_trainable,
        reference_energy=energy,
    )


def train(
    train_data: PtychoData | Sequence[PtychoData],
    training: TrainingConfig,
    execution: ExecutionConfig | None = None,
    *,
    test_data: PtychoData | None = None,
    resume_from: str | Path | None = None,
    output_dir: str | Path | None = None,
    progress: bool = True,
) -> TFTrainResult:
    """Train the TensorFlow model on ``train_data``; the contract of
    :func:`ptychopinn.workflows.train.train` (several scans, ``resume_from`` with
    ``nepochs`` the total, validation on ``test_data``)."""
    execution = execution or ExecutionConfig()
    check_execution(execution)
    output_dir = Path(output_dir or training.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_scan_sizes(training, train_data, test_data)
    ckpt = check_resume(resume_from, training.nepochs, training.model) if resume_from else None
    if not resume_from:
        set_aside_old_checkpoints(output_dir)
    keras.utils.set_random_seed(training.seed)
    if execution.deterministic:
        tf.config.experimental.enable_op_determinism()
    scans = [
        subsample(s, training.n_subsample, training.subsample_seed) for s in as_scans(train_data)
    ]
    energies = scan_energies(scans)
    check_several_scans(training, scans, energies)
    training = check_dose_augmentation(training, scans)
    warn_twin_symmetric_probes(scans)
    data = ScanDataModule(scans, training, execution, validation=test_data)
    with tf.device(device_name(execution.accelerator)):
        model = build_model(scans, training, energies)
        return _fit(model, data, training, execution, ckpt, resume_from, output_dir, progress)


def _fit(model, data, training, execution, ckpt, resume_from, output_dir, progress):
    N = training.model.N
    offsets = [data.groups.offsets]
    if data.val_set is not None:
        offsets.append(data.val_set.offsets.numpy())
    canvas_size = max(tfp.canvas_size_for(o, N) for o in offsets)
    losses = Losses(model, training, canvas_size)
    optimizer = make_optimizer(training)
    variables = model.trainable_variables
    loader = data.train_dataloader()
    per_epoch = len(loader)
    total = per_epoch * training.nepochs
    warm = schedule.warmup_steps(total, per_epoch, training.warmup_epochs)
    plateau = {"best": math.inf, "wait": 0, "factor": 1.0}
    start_epoch, step = 0, 0
    metrics_csv = output_dir / "logs" / "metrics.csv"
    rows: list[dict] = []
    if ckpt is not None:
        model.load_weight_arrays(ckpt["weights"], str(resume_from))
        _restore_optimizer(optimizer, variables, ckpt["optimizer"], str(resume_from))
        start_epoch, step, plateau = ckpt["epochs_done"], ckpt["step"], ckpt["plateau"]
        rows = _earlier_rows(metrics_csv, start_epoch)

    train_step, eval_step = make_steps(losses, optimizer, variables)

    def lr_at(k: int) -> float:
        if training.scheduler == "plateau":
            return training.learning_rate * plateau["factor"]
        factor = schedule.lr_factor(
            k,
            scheduler=training.scheduler,
            total_steps=total,
            steps_per_epoch=per_epoch,
            warmup=warm,
            min_ratio=training.min_lr_ratio,
        )
        return training.learning_rate * factor

    def run(batches, step_fn) -> dict[str, float]:
        sums: dict[str, float] = {}
        count = 0
        for batch in batches:
            nonlocal step
            b = _batch_arrays(batch)
            if step_fn is train_step:
                optimizer.learning_rate = lr_at(step)
                losses.seed_batch(step)
            terms = step_fn(b["amplitudes"], b["offsets"], b.get("probe"), b.get("labels"))
            n = b["amplitudes"].shape[0]
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value) * n
            count += n
            if step_fn is train_step:
                step += 1
                batches.set_postfix(loss=f"{float(terms['loss']):.4g}")
        return {k: v / max(count, 1) for k, v in sums.items()}

    ckpt_dir = output_dir / "checkpoints"
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, training.nepochs):
            loader.sampler.set_epoch(epoch)
            lr_start = lr_at(step)
            bar = Progress(
                loader,
                desc=f"epoch {epoch + 1}/{training.nepochs}",
                unit="batch",
                enabled=progress,
            )
            train_terms = run(bar, train_step)
            bar.close()
            row = {"epoch": epoch, "step": step, "lr-Adam": lr_start}
            row["train_loss_epoch"] = train_terms.pop("loss")
            row.update({f"train_{k}": v for k, v in train_terms.items()})
            monitored = row["train_loss_epoch"]
            if data.val_set is not None:
                val_loader = data.val_dataloader()
                row["val_loss"] = run(val_loader, eval_step)["loss"]
                monitored = row["val_loss"]
            row["intensity_scale"] = float(model.intensity_scale.numpy())
            if training.scheduler == "plateau":
                _plateau_update(plateau, row["train_loss_epoch"])
            rows.append(row)
            if execution.logger != "none":
                _write_metrics(metrics_csv, rows)
            if execution.enable_checkpointing:
                save_checkpoint(ckpt_dir / "last.h5", model, optimizer, epoch + 1, step, plateau)
            log.info(
                "epoch %d/%d: loss %.5g%s",
                epoch + 1,
                training.nepochs,
                monitored,
                " (validation)" if data.val_set is not None else "",
            )
    except KeyboardInterrupt:
        last = ckpt_dir / "last.h5"
        target = last
        if not last.exists():
            target = save_checkpoint(
                ckpt_dir / "interrupted.h5", model, optimizer, epoch, epoch * per_epoch, plateau
            )
        raise TrainingInterrupted(
            f"training interrupted at epoch {epoch + 1}; resume with --resume_from {target}"
        ) from None
    return TFTrainResult(
        model=model, groups=data.groups, output_dir=output_dir, epochs=training.nepochs
    )
