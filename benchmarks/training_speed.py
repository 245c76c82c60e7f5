"""Training throughput (groups/s) on a simulated scan, and whether data loading limits it.

Builds the same dataset, module and Lightning trainer as
:func:`ptychopinn.workflows.train.train` and times every optimisation step with a callback:

* ``step``: from ``on_train_batch_start`` to ``on_train_batch_end`` (forward, loss,
  backward, optimiser step, logging);
* ``wait``: from one step's end to the next step's start (fetching and collating the next
  batch, plus Lightning's loop overhead): the part a faster data loader could remove.

The first ``--warmup`` steps are left out. Separately, the DataLoader is iterated alone for
its own groups/s. ``benchmarks/reference_tf_layout.py`` times the original TensorFlow
layer layout for comparison (docs/speed.md).

    python benchmarks/training_speed.py                          # gridsize 1 and 2
    python benchmarks/training_speed.py --gridsizes 2 --threads 1 --n_filters_scale 1
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from ptychopinn.benchmarking.runtime import quiet_benchmark_process
from ptychopinn.benchmarking.table import plain_table
from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.workflows.datamodule import make_group_dataset
from ptychopinn.workflows.execution import build_trainer
from ptychopinn.workflows.train import build_module


class StepTimer(L.Callback):
    """Per-step compute time and the gaps between steps (data wait + loop overhead)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.steps: list[float] = []
        self.waits: list[float] = []
        self.groups = 0
        self._seen = 0
        self._start = 0.0
        self._end: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._end = None  # the epoch boundary (shuffling, worker start) is not a step gap

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        if self._end is not None and self._seen >= self.warmup:
            self.waits.append(self._start - self._end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = time.perf_counter()
        self._seen += 1
        if self._seen > self.warmup:
            self.steps.append(self._end - self._start)
            self.groups += int(batch["amplitudes"].shape[0])


def loader_rate(dataset, batch_size: int, num_workers: int) -> float:
    """Groups/s of iterating the training DataLoader alone for one epoch."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
    start = time.perf_counter()
    n = sum(int(b["amplitudes"].shape[0]) for b in loader)
    return n / (time.perf_counter() - start)


def run(args, gridsize: int, data) -> dict:
    model = ModelConfig(N=64, gridsize=gridsize, n_filters_scale=args.n_filters_scale)
    with tempfile.TemporaryDirectory() as out:
        training = TrainingConfig(
            model=model,
            nepochs=args.epochs,
            batch_size=args.batch_size,
            n_groups=args.n_groups,
            output_dir=out,
        )
        execution = ExecutionConfig(
            accelerator="cpu",
            logger="none",
            enable_checkpointing=False,
            enable_progress_bar=False,
            num_workers=args.num_workers,
            precision=args.precision,
        )
        L.seed_everything(0, verbose=False)
        dataset, _ = make_group_dataset(data, training, seed=0, need_labels=False)
        module = build_module(data, training, execution)
        timer = StepTimer(args.warmup)
        trainer = build_trainer(
            execution,
            training,
            output_dir=out,
            monitor="train_loss_epoch",
            extra_callbacks=[timer],
        )
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.num_workers,
            persistent_workers=args.num_workers > 0,
        )
        start = time.perf_counter()
        trainer.fit(module, loader)
        wall = time.perf_counter() - start
    step_s, wait_s = sum(timer.steps), sum(timer.waits)
    return {
        "gridsize": gridsize,
        "precision": args.precision,
        "batch": args.batch_size,
        "num_workers": args.num_workers,
        "groups_per_s": round(timer.groups / (step_s + wait_s), 1),
        "step_only_groups_per_s": round(timer.groups / step_s, 1),
        "wait_share": round(wait_s / (step_s + wait_s), 4),
        "loader_alone_groups_per_s": round(loader_rate(dataset, args.batch_size, args.num_workers)),
        "fit_wall_s": round(wall, 1),
        "groups_timed": timer.groups,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--gridsizes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--n_filters_scale", type=int, default=2)
    p.add_argument("--n_groups", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the timing")
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", default="32-true", help="ExecutionConfig.precision")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    quiet_benchmark_process(args.threads, level=logging.WARNING)
    data = simulate_dataset(seed=1, N=64, object_size=256, step=7.0)
    rows = [run(args, g, data) for g in args.gridsizes]
    print(plain_table(rows))
    print(f"torch threads: {torch.get_num_threads()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
