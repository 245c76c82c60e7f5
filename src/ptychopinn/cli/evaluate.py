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
    """The reconstruction's complex object and its positions (when stored), checked."""
    from ptychopinn.data.npz import read_npz_arrays

    arrays = read_npz_arrays(path, frozenset({"object", "xcoords", "ycoords"}))
    if arrays.get("object") is None:
        raise DataValidationError(
            f"{path}: key 'object': expected the reconstructed complex object, found keys "
            f"{sorted(arrays)}"
        )
    obj = arrays["object"]
    if obj.ndim != 2 or not np.issubdtype(obj.dtype, np.number):
        raise DataValidationError(
            f"{path}: key 'object': expected a 2-D numeric (complex) array, found "
            f"{obj.dtype} of shape {obj.shape}"
        )
    coords = []
    for key in ("xcoords", "ycoords"):
        value = arrays.get(key)
        if value is not None and (value.ndim != 1 or not np.issubdtype(value.dtype, np.number)):
            raise DataValidationError(
                f"{path}: key '{key}': expected (M,) numeric positions, found {value.dtype} "
                f"of shape {value.shape}"
            )
        coords.append(value)
    return obj, coords[0], coords[1]


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    from ptychopinn.atomic import check_writable
    from ptychopinn.data.ptychodus_files import load_scan
    from ptychopinn.metrics import evaluate_aligned
    from ptychopinn.workflows.outputs import write_json

    for path in (args.output, args.comparison_plot):
        if path:
            check_writable(path)
    if args.comparison_plot:
        from ptychopinn.plotting import check_picture_path

        check_picture_path(args.comparison_plot)
    obj, x, y = _read_object(args.reconstruction)
    truth_data = load_scan(args.ground_truth)
    if not truth_data.object_is_truth:
        found = "none" if truth_data.object is None else "a placeholder (all zeros) or a guess"
        raise DataValidationError(
            f"{args.ground_truth}: key 'objectGuess': expected the ground truth object, "
            f"found {found}"
        )
    if x is None:
        x, y = truth_data.xcoords, truth_data.ycoords
    try:
        metrics, aligned, mask = evaluate_aligned(
            obj, truth_data.object, xcoords=x, ycoords=y, N=truth_data.N, probe=truth_data.probe
        )
    except DataValidationError as exc:  # shapes or positions that do not go together
        raise DataValidationError(
            f"{args.reconstruction} against {args.ground_truth}: {exc}"
        ) from exc
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
