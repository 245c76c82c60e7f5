"""Warnings as log records too, for hosts that only forward logs (Ptychodus' child processes).

Ptychodus runs the ``ptycho`` / ``ptycho_torch`` front-ends in a child process and shows the
user the log records it forwards, not ``stderr``: a core ``warnings.warn`` (positions outside
the canvas, fewer groups than asked for, a multi-mode probe) would never reach the user.
:func:`forward_warnings_to_log` chains :func:`warnings.showwarning` so that every warning
shown is also logged; Python callers still see the warning as before.
"""

from __future__ import annotations

import logging
import warnings

logger = logging.getLogger("ptychopinn.warnings")

_MARK = "_ptychopinn_forwards_to_log"


def forward_warnings_to_log() -> None:
    """Log every warning Python shows (idempotent; the original display is kept)."""
    shown = warnings.showwarning
    if getattr(shown, _MARK, False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        shown(message, category, filename, lineno, file, line)
        logger.warning("%s: %s", category.__name__, message)

    setattr(show, _MARK, True)
    warnings.showwarning = show
