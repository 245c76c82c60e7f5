"""``ptycho_evaluate``: score a reconstruction NPZ against ground truth."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ptychopinn.cli.common import configure_logging, run_cli
from ptychopinn.errors import DataValidationError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptycho_evaluate",
        allow_abbrev=False,
        description="Compare a reconstruction (NPZ with 'object', as written by "
        "ptycho_inference) with the ground truth 'objectGuess' of a dataset NPZ. Alignment "
        "(sub-pixel shift, phase offset and ramp, amplitude scale) precedes scoring on the "
        "scanned region.",
    )
    p.add_argument("--reconstruction", required=True)
    p.add_argument("--ground_truth", required=True, help="dataset NPZ holding objectGuess")
    p.add_argument("--output", default=None, help="write the metrics as JSON here")
    p.add_argument("--comparison_plot", default=None, help="write a truth/recon/error PNG")
    p.add_argument("--verbose", action="store_true")
    return p


def _read_object(path: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "object" not in z:
                raise DataValidationError(
                    f"{path}: key 'object': expected the reconstructed "
                    f"complex object, found keys {sorted(z.files)}"
                )
            return (
                z["object"],
                z["xcoords"] if "xcoords" in z else None,
                z["ycoords"] if "ycoords" in z else None,
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError(f"{path}: not a readable NPZ file ({exc})") from exc


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    from ptychopinn.data.ptychodus_files import load_scan
    from ptychopinn.metrics import evaluate_aligned
    from ptychopinn.workflows.outputs import write_json

    obj, x, y = _read_object(args.reconstruction)
    truth_data = load_scan(args.ground_truth)
    if truth_data.object is None:
        raise DataValidationError(
            f"{args.ground_truth}: key 'objectGuess': expected the ground truth object, found none"
        )
    if x is None:
        x, y = truth_data.xcoords, truth_data.ycoords
    metrics, aligned, mask = evaluate_aligned(
        obj, truth_data.object, xcoords=x, ycoords=y, N=truth_data.N
    )
    if args.output:
        write_json(metrics, args.output)
    if args.comparison_plot:
        from ptychopinn.plotting import save_comparison

        save_comparison(
            aligned, truth_data.object, args.comparison_plot, mask=mask, metrics=metrics
        )
    print(json.dumps(metrics, indent=2))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
