"""Binomial thinning: the same scan as if measured at a lower dose, exactly.

Keeping each detected photon with probability ``p`` turns Poisson counts of mean ``λ`` into
Poisson counts of mean ``p·λ``: a measurement of the same object with ``p`` times the
fluence. Training on thinned copies of some groups shows the network the noise of doses it
was not measured at, which is what lets a model carry over to a scan of another dose
(figures: docs/quality.md, "Why one pass per pattern, with dose augmentation").
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

#: Squared amplitudes further than this from an integer (plus float32 rounding, relative
#: 1e-6) are not photon counts.
COUNT_TOLERANCE = 0.05


def batch_seed(*keys: int) -> int:
    """A 63-bit seed for one training batch from integer keys (run seed, rank, epoch, batch).

    Seeding each batch from where it sits in the run, not from a generator's running state,
    draws the same thinning after a resume as in an uninterrupted run."""
    words = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1, np.uint64)
    return int(words[0] >> 1)


def thin_counts(counts: Tensor, keep: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Binomially thinned ``counts`` (rounded to integers first): each photon survives with
    probability ``keep`` (broadcast against ``counts``)."""
    n = counts.float().round().clamp_min(0)
    return torch.binomial(n, keep.float().expand_as(n).contiguous(), generator=generator)


def draw_dose_fractions(
    batch: int,
    share: float,
    min_fraction: float,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-group kept fraction (B,): 1 for ``1 - share`` of the groups, log-uniform in
    ``[min_fraction, 1]`` for the others (every decade of dose equally often)."""
    chosen = torch.rand(batch, device=device, generator=generator) < share
    draws = torch.rand(batch, device=device, generator=generator)
    fractions = torch.exp(draws * math.log(min_fraction))
    return torch.where(chosen, fractions, torch.ones_like(fractions))


def look_like_counts(amplitudes) -> bool:
    """Whether squared amplitudes are (close to) integers, i.e. the data are photon counts."""
    squares = torch.as_tensor(amplitudes, dtype=torch.float64).square()
    off = (squares - squares.round()).abs()
    return bool((off <= COUNT_TOLERANCE + 1e-6 * squares).all())
