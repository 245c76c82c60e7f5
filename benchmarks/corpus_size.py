"""Unseen-object quality against the number of training objects, at equal optimiser steps.

Simulates K objects scanned with one probe (what ``ptycho_simulate --n_objects K`` writes),
trains the recipe on the K scans for ``base_epochs / K`` epochs (so every K takes the same
number of optimiser steps), and scores scans of ``--unseen`` objects none of them contains
(their mean). Prints
one row per (K, seed) and the mean per K.

    python benchmarks/corpus_size.py                           # K = 1 4 16, N=32, ~15 min
    python benchmarks/corpus_size.py --N 64 --object_size 256 --base_epochs 32
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from seed_sweep import add_scan_arguments, quiet_setup, seed_summary

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.metrics import evaluate_on_scan
from ptychopinn.workflows.infer import reconstruct
from ptychopinn.workflows.train import train

#: Object seeds of the first unseen test object and of the first training object.
UNSEEN_OBJECT_SEED = 5000
FIRST_OBJECT_SEED = 100


def run(k: int, seed: int, args: argparse.Namespace) -> dict:
    if args.base_epochs % k:
        raise SystemExit(f"--base_epochs {args.base_epochs} is not a multiple of K={k}")
    sim = dict(
        N=args.N, object_size=args.object_size, step=args.step, nphotons=args.nphotons, seed=1
    )
    scans = [simulate_dataset(object_seed=FIRST_OBJECT_SEED + i, **sim) for i in range(k)]
    unseen = [
        simulate_dataset(object_seed=UNSEEN_OBJECT_SEED + i, **sim) for i in range(args.unseen)
    ]
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainingConfig(
            model=ModelConfig(N=args.N), nepochs=args.base_epochs // k, output_dir=out, seed=seed
        )
        ex = ExecutionConfig(
            accelerator="cpu", logger="none", enable_progress_bar=False, enable_checkpointing=False
        )
        t0 = time.perf_counter()
        result = train(scans, cfg, ex)
        seconds = time.perf_counter() - t0
    scores = []
    for scan in unseen:
        rec = reconstruct(result.module.model, scan)
        scores.append(evaluate_on_scan(rec.object, scan))
    m = {key: sum(s[key] for s in scores) / len(scores) for key in ("amp_ssim", "phase_ssim")}
    return {
        "objects": k,
        "seed": seed,
        "epochs": cfg.nepochs,
        "steps": int(result.trainer.global_step),
        "train_s": round(seconds, 1),
        "unseen_amp_ssim": round(m["amp_ssim"], 3),
        "unseen_phase_ssim": round(m["phase_ssim"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--objects", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--base_epochs", type=int, default=16, help="epochs for K=1")
    p.add_argument("--unseen", type=int, default=2, help="unseen objects scored (mean)")
    add_scan_arguments(p)
    args = p.parse_args()
    quiet_setup(args)
    for k in args.objects:
        rows = []
        for seed in args.seeds:
            rows.append(run(k, seed, args))
            print(json.dumps(rows[-1]), flush=True)
        keys = ("unseen_amp_ssim", "unseen_phase_ssim")
        print(json.dumps({"objects": k, **seed_summary(rows, keys, worst=False)}), flush=True)


if __name__ == "__main__":
    main()
