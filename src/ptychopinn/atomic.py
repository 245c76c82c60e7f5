"""Atomic file output: write to a unique sibling, flush it to disk, then rename over the target.

Readers never see a half-written file, and an interrupted write leaves the old file (or
nothing) behind. Every writer of user-facing files goes through :func:`atomic_write`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, then rename it to ``path``.

    The temporary name keeps the target's suffix (writers such as matplotlib pick the format
    from it) and is unique per call; it is removed if ``write`` fails. Creates the parent
    directory. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> Path:
    """``np.savez`` of ``arrays`` to ``path`` (written through a handle, so no ``.npz`` is
    appended to a name that lacks it), atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)
