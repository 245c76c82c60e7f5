"""What every console entry point shares: logging set-up and turning errors into messages."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence

from ptychopinn.errors import PtychoPINNError


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Lightning's hints are noise for users of a finished tool.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv=None) -> int:
    """Run ``main``; a :class:`PtychoPINNError` becomes one line on stderr and exit code 2."""
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "ptychopinn"
    try:
        return int(main(argv) or 0)
    except PtychoPINNError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"{prog}: interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return 130
    except (FileExistsError, NotADirectoryError) as exc:  # mkdir where a file is
        print(
            f"{prog}: error: {exc.filename}: expected a directory (or a path where one can be "
            f"made), but a file is in the way ({exc.strerror})",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:  # unwritable output directory, full disk, ...
        print(
            f"{prog}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2


def rounded(metrics: dict) -> dict:
    """Metrics rounded to 4 digits, for reading in a printed summary."""
    return {k: round(v, 4) for k, v in metrics.items()}


def print_summary(summary: dict, metrics: dict | None = None) -> int:
    """Print a run's summary as JSON (metrics rounded for reading) and return exit code 0."""
    if metrics:
        summary["metrics"] = rounded(metrics)
    print(json.dumps(summary, indent=2))
    return 0
