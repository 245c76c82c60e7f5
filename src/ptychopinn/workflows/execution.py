"""Device resolution and Lightning ``Trainer`` construction from an :class:`ExecutionConfig`."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch import callbacks as cb
from lightning.pytorch import loggers as pl_loggers

from ptychopinn.config import ExecutionConfig, TrainingConfig
from ptychopinn.errors import ConfigError
from ptychopinn.progress import duration, on_terminal

log = logging.getLogger(__name__)


def resolve_accelerator(name: str) -> str:
    """Map ``auto|cpu|cuda|gpu|mps`` to an available accelerator (CPU fallback warns)."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        warnings.warn("no GPU found: running on the CPU", RuntimeWarning, stacklevel=2)
        return "cpu"
    if name in ("cuda", "gpu"):
        if torch.cuda.is_available():
            return "cuda"
        warnings.warn(
            f"accelerator '{name}' requested but CUDA is not available: using the CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        return "cpu"
    if name == "mps":
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        warnings.warn(
            "accelerator 'mps' requested but not available: using the CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        return "cpu"
    if name == "cpu":
        return "cpu"
    raise ConfigError(f"accelerator: expected one of auto, cpu, cuda, gpu, mps; found '{name}'")


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware: Intel AMX tiles, or the AVX-512
    bfloat16 dot products (Cooper Lake Xeons, AMD Zen 4 and later).

    There, bfloat16 convolutions run 1.6-3x faster than float32 ones (measured: README,
    "Training speed"); elsewhere bfloat16 is emulated and slower than float32.
    """
    if not torch.backends.mkldnn.is_available():  # oneDNN runs the bfloat16 kernels
        return False
    for query in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        probe = getattr(torch.cpu, query, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # a build without the query
            continue
    return False


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning's precision for ``ExecutionConfig.precision`` on a resolved accelerator.

    ``auto`` trains the network in bfloat16 (``bf16-mixed``: weights, optimiser and the
    physics stay float32) on a CPU that multiplies bfloat16 in hardware, where it
    reconstructs as well as float32 in about half the time, and in float32 everywhere else.
    """
    if precision != "auto":
        return precision
    if accelerator == "cpu" and native_bf16_cpu():
        log.info("precision auto: bf16-mixed (this CPU multiplies bfloat16 in hardware)")
        return "bf16-mixed"
    return "32-true"


def resolve_device(name: str) -> torch.device:
    """A ``torch.device`` for an accelerator name (``cuda:1`` style names are kept)."""
    if name.startswith("cuda:") and torch.cuda.is_available():
        return torch.device(name)
    acc = resolve_accelerator(name.split(":")[0])
    return torch.device("cuda" if acc == "cuda" else acc)


class SaveOnInterrupt(cb.Callback):
    """Writes ``interrupted.ckpt`` when training is interrupted (Ctrl-C), not on errors.

    An error (bad data, out of memory) leaves no checkpoint behind that could overwrite a
    good one or invite resuming a broken run.

    Lightning's own ``OnExceptionCheckpoint`` also makes every later ``fit`` resume from
    "last" implicitly; resuming must stay an explicit choice, hence this small callback.
    """

    def __init__(self, dirpath: Path) -> None:
        self.path = Path(dirpath) / "interrupted.ckpt"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exc: BaseException):
        if not isinstance(exc, KeyboardInterrupt):
            return
        trainer.save_checkpoint(str(self.path))
        log.warning(
            "training stopped (%s): resumable checkpoint written to %s",
            type(exc).__name__,
            self.path,
        )


class EpochLog(L.Callback):
    """One INFO line per training epoch (losses, seconds per epoch, time left): the progress
    of a run whose bar is off or would go to a log file."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger
        self._start: float | None = None
        self._first_epoch = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._first_epoch = trainer.current_epoch  # a resumed run starts later

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or self._start is None or trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        done = epoch - self._first_epoch
        per_epoch = (time.perf_counter() - self._start) / max(done, 1)
        left = per_epoch * max(trainer.max_epochs - epoch, 0)
        losses = "".join(
            f", {name} {float(value):.4g}"
            for name, value in trainer.callback_metrics.items()
            if name.endswith(("loss_epoch", "val_loss"))
        )
        self.logger.info(
            "epoch %d/%d%s, %s per epoch, %s left",
            epoch,
            trainer.max_epochs,
            losses,
            duration(per_epoch),
            duration(left),
        )


def _make_loggers(execution: ExecutionConfig, output_dir: Path):
    """Lightning loggers for ``execution.logger``; the CSV log is kept beside TensorBoard or
    MLflow, since ``loss_curve.png`` and the metrics history of a resumed run are read from
    it."""
    kind = execution.logger
    if kind == "none":
        return False
    csv = pl_loggers.CSVLogger(str(output_dir), name="logs", version="")
    if kind == "csv":
        return [csv]
    return [csv, _tracking_logger(kind, execution, output_dir)]


def _tracking_logger(kind: str, execution: ExecutionConfig, output_dir: Path):
    if kind == "tensorboard":
        if importlib.util.find_spec("tensorboard") is None and (
            importlib.util.find_spec("tensorboardX") is None
        ):
            raise ConfigError(
                "logger 'tensorboard' needs the optional extra: pip install "
                "'ptychopinn[tensorboard]'"
            )
        return pl_loggers.TensorBoardLogger(str(output_dir), name="tensorboard", version="")
    if kind == "mlflow":
        return _mlflow_logger(execution, output_dir)
    raise ConfigError(f"logger: expected csv, tensorboard, mlflow or none; found '{kind}'")


def mlflow_store(execution: ExecutionConfig, output_dir: Path) -> tuple[str, str | None]:
    """(tracking URI, artifact location) of an MLflow run.

    The flag wins, then ``$MLFLOW_TRACKING_URI``; otherwise a SQLite store in the output
    directory (MLflow 3 refuses its old file store), with artifacts beside it rather than in
    MLflow's default ``./mlruns`` under whatever the current directory is.
    """
    uri = execution.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri.startswith("sqlite:///"):  # a local store: its artifacts beside it
        database = Path(uri.removeprefix("sqlite:///")).resolve()
        return uri, (database.parent / "mlartifacts").as_uri()
    if uri:  # a tracking server decides where its artifacts go
        return uri, None
    output_dir = Path(output_dir).resolve()
    return f"sqlite:///{output_dir / 'mlflow.db'}", (output_dir / "mlartifacts").as_uri()


def _mlflow_logger(execution: ExecutionConfig, output_dir: Path):
    needed = ["mlflow"]
    uri, artifacts = mlflow_store(execution, output_dir)
    if uri.startswith("sqlite:"):
        needed += ["sqlalchemy", "alembic"]  # mlflow-skinny alone cannot open a SQLite store
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"logger 'mlflow' needs the optional extra (missing: {', '.join(missing)}): "
            "pip install 'ptychopinn[mlflow]'"
        )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration otherwise
    return pl_loggers.MLFlowLogger(
        experiment_name=execution.mlflow_experiment,
        tracking_uri=uri,
        artifact_location=artifacts,
        log_model=False,  # the project's archive is logged instead (log_run_outputs)
    )


def log_run_outputs(
    trainer: L.Trainer, paths: list[Path | str | None], metrics: dict | None = None
) -> None:
    """Attach files (archive, pictures, resolved config) and final scores (e.g. the SSIM of
    the stitched test scan) to the run of an MLflow logger, after training.

    Other loggers keep their files in the output directory already; nothing to do there.
    """
    for logger in trainer.loggers:
        if not isinstance(logger, pl_loggers.MLFlowLogger):
            continue
        client, run = logger.experiment, logger.run_id
        for path in paths:
            if path is not None and Path(path).is_file():
                client.log_artifact(run, str(path))
        for key, value in (metrics or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                client.log_metric(run, f"test_{key}", float(value))


def build_trainer(
    execution: ExecutionConfig,
    training: TrainingConfig,
    *,
    output_dir: str | Path,
    monitor: str,
    extra_callbacks: list | None = None,
) -> L.Trainer:
    """A Trainer with checkpoints (best + last + on exception), logging and progress; the
    epochs and gradient clipping come from ``training``."""
    output_dir = Path(output_dir)
    accelerator = resolve_accelerator(execution.accelerator)
    strategy = execution.strategy
    if execution.devices > 1 and strategy == "auto":
        strategy = "ddp"  # gloo on CPU, nccl on CUDA: chosen by Lightning
    callbacks: list = list(extra_callbacks or [])
    if execution.enable_checkpointing:
        ckpt_dir = output_dir / "checkpoints"
        # Best by the monitored loss; "last" written every epoch by its own callback, since
        # Lightning's save_last only refreshes it when a new best is saved.
        callbacks.append(
            cb.ModelCheckpoint(
                dirpath=str(ckpt_dir),
                filename="best-{epoch:03d}",
                monitor=monitor,
                mode="min",
                save_top_k=execution.checkpoint_save_top_k,
            )
        )
        callbacks.append(
            cb.ModelCheckpoint(
                dirpath=str(ckpt_dir),
                filename="last",
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
            )
        )
        callbacks.append(SaveOnInterrupt(ckpt_dir))
    if execution.logger != "none":  # the schedule, in metrics.csv and the loss curve
        callbacks.append(cb.LearningRateMonitor(logging_interval="epoch"))
    # The bar on a terminal; elsewhere (log files, Ptychodus) one line per epoch instead.
    show_bar = execution.enable_progress_bar and on_terminal()
    if not show_bar:
        callbacks.append(EpochLog())
    if execution.early_stopping_patience is not None:
        callbacks.append(
            cb.EarlyStopping(
                monitor=monitor, mode="min", patience=execution.early_stopping_patience
            )
        )
    return L.Trainer(
        accelerator=accelerator,
        devices=execution.devices,
        strategy=strategy,
        precision=resolve_precision(execution.precision, accelerator),
        deterministic=execution.deterministic,
        max_epochs=training.nepochs,
        accumulate_grad_batches=execution.accumulate_grad_batches,
        gradient_clip_val=training.gradient_clip_val,
        logger=_make_loggers(execution, output_dir),
        callbacks=callbacks,
        enable_checkpointing=execution.enable_checkpointing,
        enable_progress_bar=show_bar,
        enable_model_summary=False,
        default_root_dir=str(output_dir),
        log_every_n_steps=10,
    )
