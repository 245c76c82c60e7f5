"""Training and inference throughput of the two backends on one simulated scan, one table.

Both backends run the full physics-informed model (network, overlap constraint, probe, far
field, Poisson loss, Adam step) on the same groups: N=64, gridsize 2, batch 16, filters ×1
and ×2 by default. Training: groups/s over ``--steps`` optimiser steps after ``--warmup``
steps (compilation and first-touch costs left out), the step loop written the same way for
both (the PyTorch network channels-last, as Lightning trains it; TensorFlow's compiled
``tf.function`` step of ``ptychopinn.tf_backend.train``). Inference: patterns/s of
:func:`ptychopinn.workflows.infer.reconstruct` (grouping, network, stitching) over the
whole scan, timed on a second pass (the first compiles TensorFlow's graphs).

    python benchmarks/backend_speed.py
    python benchmarks/backend_speed.py --n_filters_scale 2 --batch_size 16 --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from ptychopinn.benchmarking.runtime import quiet_benchmark_process
from ptychopinn.benchmarking.table import plain_table
from ptychopinn.config import ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.model.lightning_module import PINNLightningModule
from ptychopinn.workflows.datamodule import make_group_dataset
from ptychopinn.workflows.infer import reconstruct
from ptychopinn.workflows.train import initial_scale_and_energy


def batches(dataset, batch_size: int, count: int, seed: int = 0) -> list[dict]:
    """``count`` batches of random groups (numpy), the same for both backends."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        items = [dataset[int(g)] for g in rng.integers(0, len(dataset), batch_size)]
        out.append(
            {
                "amplitudes": np.stack([i["amplitudes"].numpy() for i in items]),
                "offsets": np.stack([i["offsets"].numpy() for i in items]),
            }
        )
    return out


def torch_training(training: TrainingConfig, data, work: list[dict], warmup: int):
    scale, _ = initial_scale_and_energy([data], training.model.N)
    module = PINNLightningModule.from_configs(training, intensity_scale=scale, probe=data.probe)
    module.model.generator.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(module.parameters(), lr=training.learning_rate)
    module.train()
    start = 0.0
    for k, b in enumerate(work):
        if k == warmup:
            start = time.perf_counter()
        batch = {key: torch.from_numpy(v) for key, v in b.items()}
        thinning = module.thinning_generator(k, batch["amplitudes"].device)
        loss = module.compute_losses(batch, thinning)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return module.model, seconds


def tensorflow_training(training: TrainingConfig, data, work: list[dict], warmup: int):
    from ptychopinn.tf_backend import physics as tfp
    from ptychopinn.tf_backend.model import TFPtychoPINN
    from ptychopinn.tf_backend.train import Losses, make_optimizer, make_steps

    scale, _ = initial_scale_and_energy([data], training.model.N)
    model = TFPtychoPINN(training.model, np.asarray(data.probe), scale)
    size = max(tfp.canvas_size_for(b["offsets"], training.model.N) for b in work)
    optimizer = make_optimizer(training)
    train_step, _ = make_steps(Losses(model, training, size), optimizer, model.trainable_variables)
    start = 0.0
    for k, b in enumerate(work):
        if k == warmup:
            start = time.perf_counter()
        terms = train_step(b["amplitudes"], b["offsets"], None, None)
        float(terms["loss"])  # wait for the step
    return model, time.perf_counter() - start


def inference_rate(model, data, batch_size: int) -> float:
    reconstruct(model, data, batch_size=batch_size)  # compiles (TensorFlow), warms caches
    start = time.perf_counter()
    reconstruct(model, data, batch_size=batch_size)
    return data.n_positions / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backends", nargs="+", default=["pytorch", "tensorflow"])
    p.add_argument("--n_filters_scale", type=int, nargs="+", default=[1, 2])
    p.add_argument("--gridsize", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--inference_batch_size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed optimiser steps")
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    p.add_argument(
        "--per_pattern_network",
        action=argparse.BooleanOptionalAction,
        default=ModelConfig.per_pattern_network,
        help="one network pass per pattern (the recipe), or --no-per_pattern_network: per group",
    )
    p.add_argument("--dose_augmentation", type=float, default=TrainingConfig.dose_augmentation)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    quiet_benchmark_process(args.threads, level=logging.WARNING)
    if args.threads:
        import os

        os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.threads)
    data = simulate_dataset(seed=1, N=64, object_size=256, step=7.0)
    rows = []
    for scale in args.n_filters_scale:
        model_config = ModelConfig(
            N=64,
            gridsize=args.gridsize,
            n_filters_scale=scale,
            per_pattern_network=args.per_pattern_network,
        )
        training = TrainingConfig(
            model=model_config,
            batch_size=args.batch_size,
            dose_augmentation=args.dose_augmentation,
        )
        dataset, _ = make_group_dataset(data, training, seed=0, need_labels=False)
        work = batches(dataset, args.batch_size, args.warmup + args.steps)
        for backend in args.backends:
            run = torch_training if backend == "pytorch" else tensorflow_training
            model, seconds = run(training, data, work, args.warmup)
            rows.append(
                {
                    "backend": backend,
                    "filters": f"x{scale}",
                    "gridsize": args.gridsize,
                    "per_pattern": args.per_pattern_network,
                    "batch": args.batch_size,
                    "train_groups_per_s": round(args.steps * args.batch_size / seconds, 1),
                    "infer_patterns_per_s": round(
                        inference_rate(model, data, args.inference_batch_size), 1
                    ),
                    "positions": data.n_positions,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print(plain_table(rows))
    print(f"torch threads: {torch.get_num_threads()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
