"""Progress of long work: a tqdm bar on a terminal, plain periodic log lines elsewhere.

A bar redrawn with carriage returns is unreadable in a log file, a batch job's output or
Ptychodus' log window (its child process forwards log records, not the terminal), so away
from a terminal the same loop writes one INFO line at most every ``interval`` seconds, and
one at the end, with the count, the rate and the time left.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: Seconds between two progress lines in a log.
LOG_INTERVAL_S = 30.0


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr, where bars go) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``: a time left that reads at a glance."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Iterate ``iterable`` showing progress: a bar on a terminal, log lines elsewhere.

    Supports what the loops here use of tqdm: iteration, ``set_postfix`` and ``close``.
    """

    def __init__(
        self,
        iterable: Iterable[Any],
        *,
        desc: str,
        unit: str,
        total: int | None = None,
        enabled: bool = True,
        interval: float = LOG_INTERVAL_S,
        terminal: bool | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.iterable = iterable
        self.desc, self.unit = desc, unit
        self.total = total if total is not None else _length(iterable)
        self.enabled = enabled
        self.interval = interval
        self.logger = logger
        self.postfix = ""
        terminal = on_terminal() if terminal is None else terminal
        self.bar = (
            tqdm(iterable, desc=desc, unit=unit, total=self.total)
            if (enabled and terminal)
            else None
        )

    def __iter__(self) -> Iterator[Any]:
        if self.bar is not None:
            yield from self.bar
            return
        if not self.enabled:
            yield from self.iterable
            return
        start = last = time.perf_counter()
        done = 0
        for item in self.iterable:
            yield item
            done += 1
            now = time.perf_counter()
            if now - last >= self.interval or done == self.total:
                self._line(done, now - start)
                last = now

    def _line(self, done: int, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else float("inf")
        if self.total:
            left = (self.total - done) / rate if rate > 0 else float("inf")
            where = f"{done}/{self.total} {self.unit} ({100 * done / self.total:.0f}%)"
            eta = "" if done == self.total else f", {duration(left)} left"
        else:
            where, eta = f"{done} {self.unit}", ""
        self.logger.info(
            "%s: %s, %s elapsed%s%s", self.desc, where, duration(elapsed), eta, self.postfix
        )

    def set_postfix(self, **values: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**values)
        self.postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None
