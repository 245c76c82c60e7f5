"""What the small-scan seed-sweep benchmarks share: their scan flags, a quiet set-up, and
the mean (and worst) over seeds. Not a benchmark itself."""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    """The simulated scan (N=32 patterns of 169 positions by default) and CPU threads."""
    p.add_argument("--N", type=int, default=32)
    p.add_argument("--object_size", type=int, default=80)
    p.add_argument("--step", type=float, default=4.0)
    p.add_argument("--nphotons", type=float, default=1e6)
    p.add_argument("--threads", type=int, default=None)


def quiet_setup(args: argparse.Namespace) -> None:
    """Threads as asked; no warnings or progress chatter between the printed rows."""
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)


def seed_summary(rows: Sequence[dict], keys: Sequence[str], *, worst: bool = True) -> dict:
    """``mean_<key>`` (and ``worst_<key>``, the minimum) of each key over the rows, rounded."""
    table = np.array([[row[k] for k in keys] for row in rows], dtype=np.float64)
    out = {f"mean_{k}": round(float(v), 3) for k, v in zip(keys, table.mean(0), strict=True)}
    if worst:
        out |= {f"worst_{k}": round(float(v), 3) for k, v in zip(keys, table.min(0), strict=True)}
    return out
