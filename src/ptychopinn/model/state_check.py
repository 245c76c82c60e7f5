"""Reading checkpoints safely and checking saved weights against a model before loading.

``load_state_dict`` reports a mismatch as a long torch RuntimeError listing every tensor.
Weights that do not fit are a user problem (a checkpoint or archive of another gridsize,
filter count, patch size or an earlier network layout), so they get one short message that
says what differs and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ptychopinn.errors import ArchiveError

#: How many differing tensors a message names (the rest are counted).
_EXAMPLES = 3

_ADVICE = (
    "the weights were saved by a model of another configuration (N, gridsize, "
    "n_filters_scale, normalization, global_mixing, probe_big/pad_object) or by an earlier "
    "network layout; use the configuration they were trained with, or retrain"
)


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_EXAMPLES])
    more = len(names) - _EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def state_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str | None:
    """What keeps ``found`` weights from loading into a model whose state is ``expected``.

    Returns None when every tensor the model has is present with the same shape and nothing
    else is; otherwise a one-line description naming a few of the differing tensors.
    """
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    resized = [
        f"{k} {_shape(found[k])} vs {_shape(v)}"
        for k, v in expected.items()
        if k in found and _shape(found[k]) != _shape(v)
    ]
    parts = []
    if resized:
        parts.append(f"{len(resized)} with another shape (saved vs model: {_listing(resized)})")
    if missing:
        parts.append(f"{len(missing)} missing ({_listing(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unknown to this model ({_listing(unexpected)})")
    return "; ".join(parts) or None


def require_matching_state(
    expected: Mapping[str, Any], found: Any, source: str | None = None
) -> None:
    """Raise :class:`ArchiveError` (naming ``source`` if given) unless ``found`` fits."""
    prefix = f"{source}: " if source else ""
    if not isinstance(found, Mapping):
        raise ArchiveError(f"{prefix}no model weights (state_dict) found")
    problem = state_mismatch(expected, found)
    if problem:
        raise ArchiveError(f"{prefix}weights do not fit this model: {problem}; {_ADVICE}")


def read_checkpoint(path: str | os.PathLike[str]) -> dict:
    """A Lightning checkpoint read with ``torch.load(weights_only=True)``: nothing executes.

    Raises :class:`ArchiveError` naming the file when it is missing, unreadable or not a
    checkpoint with model weights.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("**/*.ckpt"))[:5]
        raise ArchiveError(
            f"{path}: expected a checkpoint file (such as {path / 'checkpoints' / 'last.ckpt'}), "
            f"found a directory{f' holding {found}' if found else ''}"
        )
    if not path.is_file():
        raise ArchiveError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and containers
        raise ArchiveError(
            f"{path}: not a checkpoint that can be loaded safely (weights_only): {exc}"
        ) from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise ArchiveError(f"{path}: expected a Lightning checkpoint with a state_dict")
    return ckpt
