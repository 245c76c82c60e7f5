"""Test-time fine-tuning: a few more epochs of the PINN's own training, on the scan itself.

The loss is the one the network was trained with (Poisson deviance of the predicted counts,
overlap constraint through the groups), so no ground truth is needed. The caller's model is
copied; the fine-tuned copy then reconstructs the scan as usual.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ptychopinn.config import check_range, coerce_fields
from ptychopinn.data.grouping import group_positions
from ptychopinn.data.groups_dataset import GroupDataset
from ptychopinn.data.types import PtychoData
from ptychopinn.model.lightning_module import poisson_deviance
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class FinetuneSettings:
    """Epochs over the scan's groups, batch size and (constant) Adam learning rate."""

    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 3e-4
    seed: int = 0

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_range(self, "epochs", ge=1)
        check_range(self, "batch_size", ge=1)
        check_range(self, "learning_rate", gt=0.0, lt=1.0)


def finetune_model(
    model: PtychoPINN,
    data: PtychoData,
    settings: FinetuneSettings | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    on_epoch: Callable[[int, PtychoPINN, float], None] | None = None,
) -> tuple[PtychoPINN, list[float], float, bool]:
    """A copy of ``model`` trained further on ``data``: (model, epoch losses, seconds, stopped).

    ``on_epoch(epoch, model, seconds)`` sees the model after each epoch (seconds exclude
    the callback). Ctrl-C stops after the current batch.
    """
    settings = settings or FinetuneSettings()
    device = torch.device(device)
    tuned = copy.deepcopy(model).to(device)
    groups = group_positions(data.coords, tuned.config.gridsize, seed=settings.seed)
    loader = DataLoader(
        GroupDataset(data.diffraction, groups),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    params = [p for p in tuned.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=settings.learning_rate)
    losses: list[float] = []
    seconds = 0.0
    stopped = False
    bar = Progress(range(settings.epochs), desc="fine-tuning", unit="epoch", enabled=progress)
    try:
        for epoch in bar:
            start = time.perf_counter()
            tuned.train()
            total, count = 0.0, 0
            for batch in loader:
                amplitudes = batch["amplitudes"].to(device)
                out = tuned(amplitudes, batch["offsets"].to(device))
                loss = poisson_deviance(out.amplitude.square(), amplitudes.square())
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * amplitudes.shape[0]
                count += amplitudes.shape[0]
            tuned.eval()
            seconds += time.perf_counter() - start
            losses.append(total / max(count, 1))
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            if on_epoch is not None:
                on_epoch(epoch + 1, tuned, seconds)
    except KeyboardInterrupt:
        stopped = True
        log.warning("fine-tuning stopped after %d epoch(s)", len(losses))
    finally:
        bar.close()
        tuned.eval()
    return tuned, losses, seconds, stopped
