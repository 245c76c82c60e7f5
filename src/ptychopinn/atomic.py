"""Atomic file output: write to a unique sibling, flush it to disk, then rename over the target.

Readers never see a half-written file, and an interrupted write leaves the old file (or
nothing) behind. Every writer of user-facing files goes through :func:`atomic_write`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _file_to_write(path: Path) -> Path:
    """The file ``path`` names: a symbolic link's target (the rename then replaces the
    target, not the link). Refused with one message naming it: a directory, or anything
    else that is not a regular file (a device, a FIFO), which a rename would replace."""
    from ptychopinn.errors import ConfigError

    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise ConfigError(f"{path}: expected a file to write, found a directory")
    if target.exists() and not target.is_file():
        raise ConfigError(f"{path}: expected a regular file to write, found a device or FIFO")
    return target


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any long work, a file path that cannot be written: a directory, or
    one whose nearest existing parent directory is not writable."""
    from ptychopinn.errors import ConfigError

    path = _file_to_write(Path(path))
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot be written ({parent} is not a writable directory)")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, then rename it to ``path``
    (to its target if ``path`` is a symbolic link: the link stays and points at the new file).

    The temporary name keeps the target's suffix (writers such as matplotlib pick the format
    from it) and is unique per call; it is removed if ``write`` fails. Creates the parent
    directory. Returns ``path``.
    """
    path = Path(path)
    target = _file_to_write(path)  # else the rename's error would name the temporary
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.with_name(
        f".{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{target.suffix}"
    )
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_directory(target.parent)  # the rename itself survives a power cut
    finally:
        tmp.unlink(missing_ok=True)
    return path


#: A temporary sibling older than this was left by a killed writer (no write takes an hour).
STALE_AFTER_S = 3600.0


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete ``path``'s temporary siblings left behind by killed writers.

    Those of a process that no longer runs go at once; others only when over
    :data:`STALE_AFTER_S` old, so a concurrent writer's file is never pulled from under it.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"):
        parts = tmp.name.split(".")
        pid = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
        try:
            old = time.time() - tmp.stat().st_mtime > STALE_AFTER_S
            if old or (pid is not None and not _process_alive(pid)):
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> Path:
    """``np.savez`` of ``arrays`` to ``path`` (written through a handle, so no ``.npz`` is
    appended to a name that lacks it), atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)
