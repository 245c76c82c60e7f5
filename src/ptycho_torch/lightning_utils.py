"""``ptycho_torch.lightning_utils.find_best_checkpoint``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["find_best_checkpoint"]


def _recorded_best(last: Path) -> Path | None:
    """The best checkpoint recorded by ModelCheckpoint in ``last.ckpt`` (None if unknown)."""
    import torch

    try:
        state = torch.load(last, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or unsafe: fall back to file names
        logger.debug("cannot read %s: %s", last, exc)
        return None
    for key, value in (state.get("callbacks") or {}).items():
        if "ModelCheckpoint" in str(key) and isinstance(value, dict):
            best = value.get("best_model_path")
            if best and Path(best).is_file():
                return Path(best)
    return None


def find_best_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The best checkpoint of a training run directory, else its last one, else None.

    Looks under ``run_dir`` (recursively) for ``best*.ckpt``; with several, the one recorded
    as best in ``last.ckpt`` (or the newest) wins. Falls back to ``last.ckpt``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    best = sorted(run_dir.rglob("best*.ckpt"))
    lasts = sorted(run_dir.rglob("last.ckpt"))
    if len(best) == 1:
        return best[0]
    if best:
        recorded = _recorded_best(lasts[0]) if lasts else None
        return recorded or max(best, key=lambda p: p.stat().st_mtime)
    return lasts[0] if lasts else None
