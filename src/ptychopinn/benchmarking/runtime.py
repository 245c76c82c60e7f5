"""Process set-up shared by the benchmark scripts."""

from __future__ import annotations

import logging
import warnings

import torch


def quiet_benchmark_process(threads: int | None = None, level: int = logging.INFO) -> None:
    """Plain ``message`` logging at ``level``, library warnings and engine info silenced, and
    ``threads`` torch intra-op threads when given (timings depend on it, so scripts expose it).
    """
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger("ptychopinn").setLevel(logging.WARNING)
    if threads:
        torch.set_num_threads(threads)
