"""One run per output directory: an advisory lock held for the run's lifetime.

Two trainings (or inferences) writing into one directory at once would mix their files
(the archive of one run next to the resolved config of the other). The lock is a
``.ptychopinn.lock`` file locked with ``flock``; it is released when the process ends,
however it ends, so a killed run never leaves the directory locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ptychopinn.errors import ConfigError

LOCK_NAME = ".ptychopinn.lock"


@contextlib.contextmanager
def output_dir_lock(output_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the directory's lock, or refuse with one message naming the other run."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks, run unguarded
        yield Path(output_dir)
        return
    out = Path(output_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fh = open(path, "a+")
    locked = False
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(
                f"output_dir: {out} is in use by another run ({holder}); wait for it or "
                "choose another --output_dir"
            ) from None
        locked = True
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield out
    finally:
        if locked and created and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            # A run that failed before writing anything leaves no empty directory behind.
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        fh.close()
