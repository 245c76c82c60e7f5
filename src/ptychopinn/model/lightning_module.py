"""Lightning wrapper: losses, optimisation and logging around :class:`PtychoPINN`."""

from __future__ import annotations

import functools
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from ptychopinn.config import (
    ExecutionConfig,
    ModelConfig,
    TrainingConfig,
    config_sections,
    from_dict,
    migrate_sections,
)
from ptychopinn.errors import TrainingDiverged
from ptychopinn.model import schedule
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.model.state_check import require_matching_state
from ptychopinn.physics.losses import amplitude_mae, poisson_nll, realspace_mae
from ptychopinn.physics.thinning import batch_seed, draw_dose_fractions, thin_counts


def poisson_deviance(pred_counts: Tensor, counts: Tensor) -> Tensor:
    """Mean Poisson NLL minus its value at the perfect fit: same gradient, zero at optimum."""
    return poisson_nll(pred_counts, counts) - poisson_nll(counts, counts)


class PINNLightningModule(L.LightningModule):
    """Trains the generator through the physics (``pinn``) or on labels (``supervised``).

    Hyper-parameters are plain dicts so a checkpoint rebuilds the module by itself; the probe
    and the intensity scale live in the state dict.
    """

    loss_name = "train_loss"
    val_loss_name = "val_loss"

    def __init__(
        self,
        model_config: dict,
        training_config: dict,
        execution_config: dict,
        intensity_scale: float = 1.0,
        probe: np.ndarray | None = None,
        reference_energy: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["probe"])
        self.model_config: ModelConfig = from_dict(ModelConfig, model_config)
        training_config = {k: v for k, v in training_config.items() if k != "model"}
        # Checkpoints of version 0.1.0 keep the optimiser settings with the execution ones.
        training_config, execution_config = migrate_sections(
            training_config, execution_config, "checkpoint", quiet=True
        )
        self.training_config: TrainingConfig = from_dict(
            TrainingConfig, {**training_config, "model": model_config}
        )
        self.execution_config: ExecutionConfig = from_dict(ExecutionConfig, execution_config)
        self._last_checked_step = -1  # the optimiser step the weights were last checked at
        N = self.model_config.N
        if probe is None:  # placeholder until the checkpoint's state dict is loaded
            probe = np.ones((N, N), dtype=np.complex64)
        self.model = PtychoPINN(
            self.model_config,
            probe,
            intensity_scale,
            probe_trainable=self.training_config.probe_trainable,
            intensity_scale_trainable=self.training_config.intensity_scale_trainable,
            reference_energy=reference_energy,
        )

    @classmethod
    def from_configs(
        cls,
        training: TrainingConfig,
        execution: ExecutionConfig | None = None,
        *,
        intensity_scale: float = 1.0,
        probe: np.ndarray | None = None,
        reference_energy: float | None = None,
    ) -> PINNLightningModule:
        """A module from typed configs (``training.model`` is the model config).

        ``__init__`` takes the configs as plain dicts because Lightning stores them as the
        checkpoint's hyper-parameters and passes them back as dicts on loading.
        """
        sections = config_sections(training, execution)
        return cls(
            sections["model"],
            sections["training"],
            sections["execution"],
            intensity_scale=intensity_scale,
            probe=probe,
            reference_energy=reference_energy,
        )

    def setup(self, stage: str) -> None:
        """Train the generator in channels-last layout (NHWC convolutions; measured on CPU:
        +11-16% at batch 16 on one thread, +2% at batch 4 on two; the layout tensor cores want
        on GPU). Runs before DDP wraps the module and the optimiser is built; parameters keep
        their identity (only ``.data`` changes)."""
        if stage == "fit":
            with torch.no_grad():
                self.model.generator.to(memory_format=torch.channels_last)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse weights of another configuration with one clear message (before Lightning's
        ``load_state_dict`` would fail with a long torch error)."""
        require_matching_state(self.state_dict(), checkpoint.get("state_dict"))

    #: Optimiser steps between checks that the weights are still finite (and at each epoch's
    #: end): a long epoch stops soon after it diverges, at one device sync per check.
    DIVERGENCE_CHECK_STEPS = 25

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        # Once per optimiser step: with accumulate_grad_batches > 1 several batches share one.
        if step % self.DIVERGENCE_CHECK_STEPS == 0 and step != self._last_checked_step:
            self._last_checked_step = step
            self._stop_if_diverged(f"epoch {self.current_epoch + 1}, step {step}")

    def on_train_epoch_end(self) -> None:
        self._stop_if_diverged(f"epoch {self.current_epoch + 1}")

    def _stop_if_diverged(self, where: str) -> None:
        """Stop once the weights are no longer finite: the rest of the run could not recover,
        and its archive would not load. The weights, not the loss, are checked: they are the
        same on every DDP rank, so all ranks stop together."""
        finite = torch.stack([torch.isfinite(p).all() for p in self.parameters()]).all()
        if not bool(finite):
            raise TrainingDiverged(
                f"training diverged in {where}: weights or intensity scale became NaN/Inf; "
                f"lower learning_rate (now {self.training_config.learning_rate:g}) or check "
                "the data's scale (amplitudes = sqrt(photon counts)); no model archive written"
            )

    @property
    def supervised(self) -> bool:
        return self.model_config.model_type == "supervised"

    def forward(self, amplitudes: Tensor, offsets: Tensor | None = None) -> Tensor:
        """Object patches (B, C, N, N) for measured amplitudes."""
        return self.model.predict_patches(amplitudes, None if self.supervised else offsets)

    def compute_losses(
        self, batch: dict[str, Tensor], thinning: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The weighted loss terms for one batch; key ``loss`` holds their sum.

        ``thinning``: the generator of a training batch's dose augmentation (none: off)."""
        cfg = self.training_config
        amplitudes = batch["amplitudes"]
        labels = batch.get("labels")
        terms: dict[str, Tensor] = {}
        if self.supervised:
            patches = self.model.predict_patches(amplitudes, None)
            terms["realspace_mae"] = realspace_mae(patches, labels)
        else:
            measured = amplitudes.square()
            keep = None
            if thinning is not None:
                amplitudes, measured, keep = self._thinned(amplitudes, measured, thinning)
            out = self.model(amplitudes, batch["offsets"], batch.get("probe"))
            if cfg.nll_weight > 0:
                pred = out.amplitude.square()
                if keep is not None:
                    pred = pred * keep
                terms["poisson_nll"] = cfg.nll_weight * poisson_deviance(pred, measured)
            if cfg.mae_weight > 0:
                terms["mae"] = cfg.mae_weight * amplitude_mae(out.amplitude, amplitudes)
            if labels is not None and cfg.realspace_mae_weight > 0:
                terms["realspace_mae"] = cfg.realspace_mae_weight * realspace_mae(
                    out.object_patches, labels
                )
            if labels is not None and cfg.realspace_weight > 0:
                diff = out.object_patches - labels
                terms["realspace_mse"] = cfg.realspace_weight * (diff.abs() ** 2).mean()
        terms["loss"] = sum(terms.values())
        return terms

    def _thinned(
        self, amplitudes: Tensor, counts: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Dose augmentation: some groups' counts thinned to a lower dose.

        Returns the network input (thinned counts brought back to the measured dose, as
        inference does for a scan of another dose), the counts the loss compares with, and
        the kept fraction per group (B, 1, 1, 1) that scales the predicted intensity.
        """
        cfg = self.training_config
        keep = draw_dose_fractions(
            amplitudes.shape[0],
            cfg.dose_augmentation,
            cfg.dose_augmentation_min,
            device=amplitudes.device,
            generator=generator,
        ).view(-1, 1, 1, 1)
        chosen = keep.view(-1) < 1
        if not bool(chosen.any()):
            return amplitudes, counts, keep
        counts = counts.clone()
        counts[chosen] = thin_counts(counts[chosen], keep[chosen], generator)
        return (counts / keep).sqrt(), counts, keep

    def thinning_generator(self, batch_idx: int, device: torch.device) -> torch.Generator | None:
        """The dose augmentation's generator for this batch, seeded by its place in the run
        (so a resumed run thins as an uninterrupted one); none when the option is off."""
        cfg = self.training_config
        if cfg.dose_augmentation <= 0 or self.supervised:
            return None
        generator = torch.Generator(device=device)
        keys = (cfg.seed, self.global_rank, self.current_epoch, batch_idx)
        return generator.manual_seed(batch_seed(*keys))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        amplitudes = batch["amplitudes"]
        terms = self.compute_losses(batch, self.thinning_generator(batch_idx, amplitudes.device))
        bs = amplitudes.shape[0]
        self.log(
            self.loss_name,
            terms["loss"],
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=bs,
            sync_dist=True,
        )
        for name, value in terms.items():
            if name != "loss":
                self.log(
                    f"train_{name}",
                    value,
                    on_epoch=True,
                    on_step=False,
                    batch_size=bs,
                    sync_dist=True,
                )
        self.log(
            "intensity_scale",
            self.model.intensity_scale.detach(),
            on_epoch=True,
            on_step=False,
            batch_size=bs,
            sync_dist=True,
        )
        return terms["loss"]

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.compute_losses(batch)
        self.log(
            self.val_loss_name,
            terms["loss"],
            prog_bar=True,
            on_epoch=True,
            batch_size=batch["amplitudes"].shape[0],
            sync_dist=True,
        )
        return terms["loss"]

    def configure_optimizers(self) -> Any:
        """Adam with a per-step schedule: linear warm-up, then the configured decay.

        ``plateau`` reacts to the epoch loss, so it has no warm-up (see :mod:`.schedule`).
        """
        cfg = self.training_config
        optimizer = torch.optim.Adam(self.parameters(), lr=cfg.learning_rate)
        if cfg.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": sched, "monitor": f"{self.loss_name}_epoch"},
            }
        epochs = max(1, self.trainer.max_epochs or cfg.nepochs)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = total / epochs
        warm = schedule.warmup_steps(total, per_epoch, cfg.warmup_epochs)
        factor = functools.partial(
            schedule.lr_factor,
            scheduler=cfg.scheduler,
            total_steps=total,
            steps_per_epoch=per_epoch,
            warmup=warm,
            min_ratio=cfg.min_lr_ratio,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
