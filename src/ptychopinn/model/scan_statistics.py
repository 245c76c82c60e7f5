"""Batch-normalisation statistics taken from the scan being reconstructed (opt-in).

A network with batch normalisation keeps, for inference, the mean and variance of each
channel that it saw in training: the training scan's, mixed with the thinned (lower-dose)
copies that dose augmentation feeds it. Re-estimating them from the scan being reconstructed
(AdaBN, Li et al. 2016) costs a forward pass over a sample of its patterns and no training.
It is not the default: the scan's statistics also carry what differs in its object (its
phase contrast, say), which the adaptation normalises away. Measured on the panel (docs/quality.md,
"Batch-norm statistics of the scan"), it helped at 100x below the training dose and was mixed
at the training dose (a natural-image case lost 0.05 phase SSIM). The stored statistics are
put back afterwards, so the model itself is never changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: Fewer patterns than this keep the training statistics (too few for a stable estimate).
MIN_PATTERNS = 64
#: Patterns (evenly spread over the scan) the statistics are estimated from, at most.
MAX_PATTERNS = 256


def batch_norm_layers(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


@contextlib.contextmanager
def statistics_from(module: nn.Module, run_sample: Callable[[], None]) -> Iterator[bool]:
    """Within the block, ``module``'s batch-norm layers use the statistics of the batches
    that ``run_sample()`` passes through it (each batch weighing the same), and are in eval
    mode; on leaving, their stored statistics, momentum and mode are restored. Yields whether
    there was any batch-norm layer to adapt."""
    layers = batch_norm_layers(module)
    if not layers:
        yield False
        return
    saved = [
        (m.training, m.momentum, {k: b.clone() for k, b in m.named_buffers(recurse=False)})
        for m in layers
    ]
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the sample's batches
            m.train()
        run_sample()
        for m in layers:
            m.eval()
        yield True
    finally:
        for m, (training, momentum, buffers) in zip(layers, saved, strict=True):
            for name, value in buffers.items():
                getattr(m, name).copy_(value)
            m.momentum = momentum
            m.train(training)


def sample_batches(indices: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``indices`` dealt into batches of nearly equal size, each spread over the whole list
    (batch j takes every k-th entry from j), so every batch sees all of the scan and the
    per-batch statistics average to the sample's."""
    k = max(1, -(-len(indices) // batch_size))
    return [indices[j::k] for j in range(k)]
