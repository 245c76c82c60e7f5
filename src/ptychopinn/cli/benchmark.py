"""``ptycho_benchmark``: PINN against Pty-Chi LSQML on the same scan, in one run, one table.

Without ``--data`` two scans are simulated with one probe: the PINN trains on one object and
both methods reconstruct the other (the PINN never saw it). With ``--data`` the scan is
loaded; the PINN comes from ``--model_path``, else is trained on ``--train_data``, else on
the scan itself (unsupervised training needs no ground truth). LSQML (optional extra
``ptychopinn[ptychi]``) runs in a child process on the same patterns, probe and positions.

Seconds are reconstruction times: PINN inference (gather, network, stitching) after a
one-batch warm-up, and LSQML's task set-up plus all its epochs. When the PINN was trained in
this run, a ``PINN+training`` row adds the training time. Quality columns need the true
object (``objectGuess``) and are computed after alignment (translation, phase ramp and
offset, amplitude scale) over the scanned region.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ptychopinn.atomic import atomic_savez, check_writable
from ptychopinn.benchmarking.lsqml import (
    NOISE_MODELS,
    LSQMLSettings,
    lsqml_unavailable_reason,
    run_lsqml,
)
from ptychopinn.benchmarking.table import MethodResult, comparison_rows, format_table
from ptychopinn.benchmarking.time_to_quality import (
    CURVES,
    format_curve,
    plot_curve,
    time_to_quality,
)
from ptychopinn.benchmarking.time_to_quality import DEFAULT_EPOCHS as TTQ_EPOCHS
from ptychopinn.cli.common import configure_logging, run_cli
from ptychopinn.cli.config_flags import add_bool_flag, add_execution_flags, execution_overrides
from ptychopinn.config import (
    ExecutionConfig,
    ModelConfig,
    TrainingConfig,
    from_dict,
)
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ConfigError

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptycho_benchmark",
        allow_abbrev=False,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = p.add_argument_group("data and model")
    io.add_argument("--data", default=None, help="NPZ scan to reconstruct (default: simulate)")
    io.add_argument("--train_data", default=None, help="NPZ scan to train the PINN on")
    io.add_argument("--model_path", default=None, help="trained archive (skips training)")
    io.add_argument("--output_dir", default="benchmark_outputs")
    sim = p.add_argument_group("simulation (without --data)")
    sim.add_argument(
        "--N", type=int, default=64, choices=ModelConfig.ALLOWED_N, help="pattern size"
    )
    sim.add_argument("--object_size", type=int, default=256, help="px (256, step 7: 784 scans)")
    sim.add_argument("--step", type=float, default=7.0, help="raster step, px")
    sim.add_argument("--nphotons", type=float, default=1e6, help="mean counts per pattern")
    sim.add_argument("--seed", type=int, default=1)
    tr = p.add_argument_group("PINN")
    # Defaults: the recipe, i.e. the config defaults (one definition, in ptychopinn.config).
    model_d, train_d = ModelConfig(), TrainingConfig()
    tr.add_argument("--nepochs", type=int, default=train_d.nepochs)
    tr.add_argument("--gridsize", type=int, default=model_d.gridsize)
    tr.add_argument("--n_filters_scale", type=int, default=model_d.n_filters_scale)
    tr.add_argument(
        "--normalization", choices=ModelConfig.NORMALIZATIONS, default=model_d.normalization
    )
    tr.add_argument("--batch_size", type=int, default=train_d.batch_size)
    tr.add_argument("--n_groups", type=int, default=train_d.n_groups, help="default: all")
    tr.add_argument("--learning_rate", type=float, default=train_d.learning_rate)
    tr.add_argument("--scheduler", choices=TrainingConfig.SCHEDULERS, default=train_d.scheduler)
    tr.add_argument("--inference_batch_size", type=int, default=64)
    lq = p.add_argument_group("Pty-Chi LSQML")
    lq.add_argument(
        "--lsqml",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: run when Pty-Chi is installed; on: fail if it is not",
    )
    lq.add_argument("--lsqml_epochs", type=int, default=100)
    lq.add_argument("--lsqml_batch_size", type=int, default=100)
    lq.add_argument("--lsqml_noise_model", choices=NOISE_MODELS, default="gaussian")
    add_bool_flag(
        lq,
        "lsqml_optimize_probe",
        False,
        "refine the probe too (default: keep the given probe, like the PINN)",
    )
    lq.add_argument("--lsqml_timeout", type=float, default=None, help="seconds")
    tq = p.add_argument_group("time to quality (refinement after the network)")
    tq.add_argument(
        "--refine_curves",
        nargs="*",
        choices=CURVES,
        default=["object", "lsqml"],
        help="curves of SSIM against seconds: object (PINN + direct object refinement), "
        "finetune (PINN + test-time training), lsqml_from_pinn, lsqml (from a flat object); "
        "the LSQML curves need Pty-Chi; give none to skip",
    )
    tq.add_argument(
        "--refine_epochs",
        type=int,
        nargs="+",
        default=list(TTQ_EPOCHS),
        help="epoch counts of every curve",
    )
    tq.add_argument(
        "--finetune_max_epochs",
        type=int,
        default=5,
        help="fine-tuning costs a training epoch per epoch: only counts up to this",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (both methods)")
    p.add_argument("--json", default=None, help="also write the table and settings here")
    p.add_argument("--verbose", action="store_true")
    add_execution_flags(p, only=("accelerator",))
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.object_size < args.N:
        raise ConfigError(
            f"--object_size: expected at least --N = {args.N} px, found {args.object_size}"
        )
    for name in ("object_size", "nepochs", "batch_size", "inference_batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name}: expected an integer >= 1, found {value}")
    for name in ("step", "nphotons"):
        if not getattr(args, name) > 0:
            raise ConfigError(f"--{name}: expected a positive number, found {getattr(args, name)}")
    for k in args.refine_epochs:
        if not 1 <= k <= 10_000:
            raise ConfigError(f"--refine_epochs: expected integers in [1, 10000], found {k}")
    if args.model_path and args.train_data:
        raise ConfigError(
            "--model_path, --train_data: give one (a trained model or data to train on)"
        )


def load_scans(args: argparse.Namespace) -> tuple[PtychoData, PtychoData | None]:
    """(scan to reconstruct, scan to train on or None when a model is given)."""
    from ptychopinn.data.ptychodus_files import load_scan
    from ptychopinn.data.simulate import simulate_dataset

    if args.data:
        test = load_scan(args.data)
        if args.model_path:
            return test, None
        if args.train_data:
            return test, load_scan(args.train_data)
        log.info("no --train_data or --model_path: the PINN trains on %s itself", args.data)
        return test, test
    sim = dict(N=args.N, object_size=args.object_size, step=args.step, nphotons=args.nphotons)
    test = simulate_dataset(seed=args.seed, object_seed=args.seed + 1000, **sim)
    if args.model_path:
        return test, None
    train = (
        load_scan(args.train_data) if args.train_data else simulate_dataset(seed=args.seed, **sim)
    )
    return test, train


def get_model(args, train_data: PtychoData | None, execution: ExecutionConfig, out: Path):
    """(model, training seconds or None)."""
    from ptychopinn.bundle import load_model, save_model
    from ptychopinn.workflows.execution import resolve_device
    from ptychopinn.workflows.train import train

    if train_data is None:
        return load_model(args.model_path, device=resolve_device(execution.accelerator)).model, None
    model_cfg = ModelConfig(
        N=train_data.N,
        gridsize=args.gridsize,
        n_filters_scale=args.n_filters_scale,
        normalization=args.normalization,
    )
    training = TrainingConfig(
        model=model_cfg,
        nepochs=args.nepochs,
        batch_size=args.batch_size,
        n_groups=args.n_groups,
        output_dir=str(out / "training"),
        learning_rate=args.learning_rate,
        scheduler=args.scheduler,
    )
    start = time.perf_counter()
    result = train(train_data, training, execution)
    seconds = time.perf_counter() - start
    save_model(result.module.model, out, training_config=training, execution_config=execution)
    return result.module.model, seconds


def run_pinn(model, data: PtychoData, args, device) -> tuple[np.ndarray, float]:
    from ptychopinn.workflows.infer import reconstruct

    batch = args.inference_batch_size
    reconstruct(
        model, data.subset(np.arange(min(batch, data.n_positions))), batch_size=batch, device=device
    )
    start = time.perf_counter()
    rec = reconstruct(model, data, batch_size=batch, device=device)
    return rec.object, time.perf_counter() - start


def score(obj: np.ndarray, data: PtychoData) -> dict | None:
    from ptychopinn.metrics import evaluate_on_scan

    if not data.object_is_truth:
        return None
    return evaluate_on_scan(obj, data)


def lsqml_settings(args) -> LSQMLSettings:
    return LSQMLSettings(
        epochs=args.lsqml_epochs,
        batch_size=args.lsqml_batch_size,
        optimize_probe=args.lsqml_optimize_probe,
        noise_model=args.lsqml_noise_model,
        device="cpu" if args.torch_accelerator == "cpu" else "auto",
        threads=args.threads,
    )


def run_curves(args, model, test, pinn_obj, pinn_s, device, settings, reason) -> tuple:
    """(time-to-quality points, note): LSQML curves are left out without Pty-Chi."""
    curves = list(args.refine_curves)
    lsqml_curves = [c for c in curves if c.startswith("lsqml")]
    note = ""
    if lsqml_curves and (settings is None or reason):
        note = f"time to quality: {', '.join(lsqml_curves)} skipped: {reason or '--lsqml off'}"
        curves = [c for c in curves if not c.startswith("lsqml")]
    if not curves:
        return [], note
    return time_to_quality(
        model,
        test,
        pinn_obj,
        pinn_s,
        lambda obj: score(obj, test),
        curves=curves,
        epochs=sorted(set(args.refine_epochs)),
        finetune_max_epochs=args.finetune_max_epochs,
        device=device,
        lsqml_settings=settings,
    ), note


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
    _check_args(args)
    if args.json:
        check_writable(args.json)
    import torch

    from ptychopinn.workflows.execution import resolve_device
    from ptychopinn.workflows.outputs import write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = lsqml_settings(args) if args.lsqml != "off" else None
    reason = lsqml_unavailable_reason() if settings else None
    if reason and args.lsqml == "on":
        raise ConfigError(f"--lsqml on: {reason}")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    execution = from_dict(
        ExecutionConfig,
        {
            "logger": "none",
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            **execution_overrides(args),
        },
        source="command line",
    )
    test, train_data = load_scans(args)
    model, train_s = get_model(args, train_data, execution, out)
    device = resolve_device(execution.accelerator)
    pinn_obj, pinn_s = run_pinn(model, test, args, device)
    atomic_savez(out / "pinn_object.npz", object=pinn_obj)
    methods = [MethodResult("PINN", pinn_s, test.n_positions, score(pinn_obj, test))]
    if train_s is not None:
        methods.append(
            MethodResult("PINN+training", pinn_s + train_s, test.n_positions, methods[0].metrics)
        )
    lsqml_info: dict = {"ran": False}
    if settings and not reason:
        res = run_lsqml(test, settings, timeout=args.lsqml_timeout)
        atomic_savez(out / "lsqml_object.npz", object=res.object, probe=res.probe)
        methods.append(
            MethodResult("LSQML", res.solve_s, test.n_positions, score(res.object, test))
        )
        lsqml_info = {
            "ran": True,
            "settings": asdict(settings),
            "wall_s_with_start": res.wall_s,
            "final_loss": res.final_loss,
            "device": res.device,
            "torchvision_stand_in": res.torchvision_shim,
        }
    elif settings:
        lsqml_info["skipped"] = reason
    curve_points, curve_note = run_curves(
        args, model, test, pinn_obj, pinn_s, device, settings, reason
    )
    rows = comparison_rows(methods)
    print(format_table(rows))
    if curve_points:
        print("\nTime to quality (seconds include the network's pass for PINN + refinement):")
        print(format_curve(curve_points))
        plot_curve(curve_points, out / "time_to_quality.png", title=f"{test.n_positions} patterns")
    if curve_note:
        print(curve_note)
    if reason and settings:
        print(f"LSQML skipped: {reason}")
    if test.object is None:
        print("quality columns n/a: the scan has no objectGuess (ground truth)")
    summary = {
        "positions": test.n_positions,
        "N": test.N,
        "gridsize": model.config.gridsize,
        "train_s": train_s,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "lsqml": lsqml_info,
        "rows": rows,
        "time_to_quality": [p.row() for p in curve_points],
    }
    for path in (out / "benchmark.json", args.json):
        if path:
            write_json(summary, path)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
