"""``ptycho_inference``: reconstruct a scan with a trained model archive."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ptychopinn.cli.common import configure_logging, print_summary, rounded, run_cli
from ptychopinn.cli.config_flags import add_bool_flag, add_execution_flags, execution_overrides
from ptychopinn.cli.train import check_backend
from ptychopinn.config import ExecutionConfig, from_dict
from ptychopinn.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptycho_inference",
        allow_abbrev=False,
        description="Reconstruct a scan with a trained model.",
    )
    p.add_argument(
        "--model_path", required=True, help="directory holding wts.h5.zip, or the archive itself"
    )
    p.add_argument(
        "--test_data",
        required=True,
        help="scan to reconstruct: NPZ, Ptychodus product.h5 (diffraction.h5 beside it) or CXI",
    )
    p.add_argument("--output_dir", default="inference_outputs")
    p.add_argument(
        "--n_images", type=int, default=None, help="reconstruct only the first n scan positions"
    )
    p.add_argument(
        "--n_subsample", type=int, default=None, help="reconstruct a random subset of n positions"
    )
    p.add_argument("--subsample_seed", type=int, default=None)
    p.add_argument("--backend", default="pytorch", choices=("pytorch", "tensorflow"))
    add_bool_flag(p, "comparison_plot", True)
    p.add_argument("--verbose", action="store_true")
    add_execution_flags(p, only=("accelerator", "num_workers", "inference_batch_size"))
    add_refine_flags(p)
    return p


def add_refine_flags(p: argparse.ArgumentParser) -> None:
    """``--refine METHOD[:EPOCHS]`` and the settings of the object refinement."""
    from ptychopinn.refine.object import NOISE_MODELS, ObjectRefineSettings

    defaults = ObjectRefineSettings()
    rf = p.add_argument_group(
        "refinement after the network (the physics, on this scan, without ground truth)"
    )
    rf.add_argument(
        "--refine",
        default=None,
        metavar="METHOD[:EPOCHS]",
        help="object:K (direct refinement of the stitched object, the fastest to quality), "
        "finetune:K (K epochs of network training on this scan), lsqml:K (Pty-Chi LSQML "
        "from the PINN object; needs the ptychi extra); writes reconstruction_refined.npz, "
        "refined_*.png and metrics_refined.json next to the network's result",
    )
    add_bool_flag(rf, "refine_probe", defaults.refine_probe, "object: refine the probe too")
    rf.add_argument(
        "--refine_batch_size",
        type=int,
        default=defaults.batch_size,
        help="object: scan positions per update",
    )
    rf.add_argument(
        "--refine_step",
        type=float,
        default=defaults.step,
        help="object: fraction of the illumination-normalised (PIE) step",
    )
    rf.add_argument(
        "--refine_noise_model",
        choices=NOISE_MODELS,
        default=defaults.noise_model,
        help="object: likelihood of the measured counts",
    )


def refine_settings(args: argparse.Namespace):
    """The object-refinement settings of the command line (checked, one message if bad)."""
    from ptychopinn.refine.object import ObjectRefineSettings

    return ObjectRefineSettings(
        batch_size=args.refine_batch_size,
        step=args.refine_step,
        refine_probe=args.refine_probe,
        noise_model=args.refine_noise_model,
    )


def _check_subset_flags(args: argparse.Namespace) -> None:
    """Counts are >= 1 and seeds >= 0 (numpy would raise deep inside otherwise)."""
    for name, low in (("n_images", 1), ("n_subsample", 1), ("subsample_seed", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise ConfigError(f"--{name}: expected an integer >= {low}, found {value}")


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    check_backend(args.backend)
    _check_subset_flags(args)
    from ptychopinn.bundle import load_model
    from ptychopinn.data.ptychodus_files import load_scan
    from ptychopinn.refine import parse_refine_spec
    from ptychopinn.workflows.execution import resolve_device
    from ptychopinn.workflows.lock import output_dir_lock
    from ptychopinn.workflows.train import subsample

    spec = parse_refine_spec(args.refine)
    object_settings = refine_settings(args)
    execution = from_dict(ExecutionConfig, execution_overrides(args), source="command line")
    device = resolve_device(execution.accelerator)
    loaded = load_model(args.model_path, device=device)
    data = load_scan(args.test_data)
    if args.n_images is not None:
        data = data.subset(np.arange(min(max(1, args.n_images), data.n_positions)))
    data = subsample(data, args.n_subsample, args.subsample_seed)
    with output_dir_lock(args.output_dir):
        return _reconstruct_and_write(args, loaded, data, device, execution, spec, object_settings)


def _reconstruct_and_write(args, loaded, data, device, execution, spec, object_settings) -> int:
    from ptychopinn.refine import refine_reconstruction
    from ptychopinn.workflows.infer import reconstruct
    from ptychopinn.workflows.outputs import remove_outputs, write_outputs

    start = time.perf_counter()
    rec = reconstruct(
        loaded.model, data, device=device, batch_size=execution.inference_batch_size, progress=True
    )
    seconds = time.perf_counter() - start
    metrics = write_outputs(rec, data, args.output_dir, comparison_plot=args.comparison_plot)
    product = _write_product(rec, data, args.output_dir)
    summary = {
        "output_dir": args.output_dir,
        "positions": data.n_positions,
        "seconds": round(seconds, 3),
        "patterns_per_s": round(data.n_positions / seconds, 1),
    }
    if product:
        summary["ptychodus_product"] = str(product)
    if spec is None:  # a refined result of an earlier run would pass for this scan's
        remove_outputs(args.output_dir, suffix="_refined")
        (Path(args.output_dir) / product_name("_refined")).unlink(missing_ok=True)
    else:
        refined = refine_reconstruction(
            loaded.model,
            data,
            rec.object,
            spec,
            device=device,
            object_settings=object_settings,
            progress=True,
        )
        refined_rec = replace(rec, object=refined.object)
        refined_metrics = write_outputs(
            refined_rec,
            data,
            args.output_dir,
            comparison_plot=args.comparison_plot,
            suffix="_refined",
        )
        _write_product(refined_rec, data, args.output_dir, suffix="_refined")
        summary["refine"] = {
            "method": refined.method,
            "epochs": refined.epochs,
            "seconds": round(refined.seconds, 3),
            "stopped": refined.stopped,
        }
        if refined.losses:
            summary["refine"]["final_loss"] = round(refined.losses[-1], 6)
        if refined_metrics:
            summary["refine"]["metrics"] = rounded(refined_metrics)
    return print_summary(summary, metrics)


def product_name(suffix: str = "") -> str:
    """The Ptychodus product written next to ``reconstruction{suffix}.npz``."""
    return f"reconstruction{suffix}_product.h5"


def _write_product(rec, data, output_dir, suffix: str = "") -> Path | None:
    """The object as a Ptychodus product (opens in Ptychodus, refinable there)."""
    from ptychopinn.data.ptychodus_files import ptychodus_available, save_product

    path = Path(output_dir) / product_name(suffix)
    if not ptychodus_available():
        path.unlink(missing_ok=True)  # an earlier run's would pass for this one's
        logging.getLogger(__name__).info(
            "%s not written: Ptychodus is not installed (pip install 'ptychopinn[ptychodus]')",
            path.name,
        )
        return None
    return save_product(path, rec, data)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
