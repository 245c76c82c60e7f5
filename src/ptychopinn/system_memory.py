"""How much memory the system can still give: checked before allocations that scale with
user input (simulated scans, augmented copies), so an impossible request gets one message
instead of an out-of-memory traceback or a swapping machine."""

from __future__ import annotations

import os


def available_memory_bytes() -> int | None:
    """Memory the system can still give (``MemAvailable`` on Linux; None when unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def refuse_over_half(need: int, available: int | None, what: str, advice: str) -> None:
    """One :class:`~ptychopinn.errors.ConfigError` when ``need`` bytes exceed half of the
    memory ``available`` (None: unknown, not checked). The message reads ``"{what} {need}
    GiB in memory, more than half of the {available} GiB available; {advice}"``."""
    if available is None or need <= available / 2:
        return
    from ptychopinn.errors import ConfigError

    raise ConfigError(
        f"{what} {need / 2**30:.1f} GiB in memory, more than half of the "
        f"{available / 2**30:.1f} GiB available; {advice}"
    )
