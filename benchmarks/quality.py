"""Reconstruction quality on simulated scans, measured with the project's own metrics.

Trains on one simulated scan (N=64, 1e6 photons by default), then reconstructs the training
scan and a scan of a different object taken with the same probe, and prints one table row per
(case, scan). Cases: the PINN recipe, optionally the supervised baseline on equal data and a
Poisson-vs-MAE comparison at low dose. The last column is a diagnostic (it uses the truth):
phase SSIM once the smooth part of the phase error is subtracted, to show at which scale the
phase error lives.

    python benchmarks/quality.py                       # PINN recipe only (CPU: ~9 min)
    python benchmarks/quality.py --cases pinn supervised mae_low_dose nll_low_dose
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings

import numpy as np
import torch
from scipy import ndimage

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.data.types import PtychoData
from ptychopinn.metrics import align, evaluate, scanned_region_mask
from ptychopinn.workflows.infer import reconstruct
from ptychopinn.workflows.train import train

CASES = {
    "pinn": dict(model_type="pinn"),
    "supervised": dict(model_type="supervised"),
    "nll_low_dose": dict(model_type="pinn", nphotons=1e4),
    "mae_low_dose": dict(model_type="pinn", nphotons=1e4, nll_weight=0.0, mae_weight=1.0),
}


#: Gaussian sigma (pixels) that separates smooth from fine phase error in the diagnostic.
SMOOTH_ERROR_SIGMA = 4.0


def phase_ssim_without_smooth_error(obj: np.ndarray, scan: PtychoData) -> float:
    """Diagnostic, not a score (it uses the truth): phase SSIM after subtracting the smooth
    part (Gaussian, ``SMOOTH_ERROR_SIGMA``) of the aligned phase error.

    A large gain over ``phase_ssim`` says the error lives at scales of several pixels up to
    the probe, which a defocused probe's diffraction encodes weakly, not in fine detail.
    """
    mask = scanned_region_mask(scan.xcoords, scan.ycoords, scan.N, scan.object.shape)
    aligned, _ = align(obj, scan.object, mask=mask)
    error = np.where(mask, np.angle(aligned * np.conj(scan.object)), 0.0)
    coverage = ndimage.gaussian_filter(mask.astype(np.float64), SMOOTH_ERROR_SIGMA)
    smooth = ndimage.gaussian_filter(error, SMOOTH_ERROR_SIGMA) / np.maximum(coverage, 1e-6)
    corrected = aligned * np.exp(-1j * smooth)
    m = evaluate(corrected, scan.object, xcoords=scan.xcoords, ycoords=scan.ycoords, N=scan.N)
    return m["phase_ssim"]


def run_case(name: str, args: argparse.Namespace) -> list[dict]:
    spec = dict(CASES[name])
    nphotons = spec.pop("nphotons", args.nphotons)
    model_type = spec.pop("model_type")
    sim = dict(N=64, object_size=args.object_size, step=args.step, nphotons=nphotons)
    train_scan = simulate_dataset(seed=1, **sim)
    # Same seed: same scan and probe (up to the dose scale); object_seed: a different object.
    other_scan = simulate_dataset(seed=1, object_seed=7, **sim)
    model = ModelConfig(
        N=64,
        gridsize=args.gridsize,
        n_filters_scale=args.n_filters_scale,
        model_type=model_type,
        normalization=args.normalization,
        global_mixing=args.global_mixing,
    )
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainingConfig(
            model=model,
            nepochs=args.epochs,
            batch_size=args.batch_size,
            n_groups=None,
            output_dir=out,
            seed=args.seed,
            **spec,
        )
        ex = ExecutionConfig(
            accelerator=args.accelerator,
            logger="none",
            enable_progress_bar=False,
            enable_checkpointing=False,
            learning_rate=args.learning_rate,
            scheduler=args.scheduler,
        )
        start = time.perf_counter()
        result = train(train_scan, cfg, ex)
        seconds = time.perf_counter() - start
    rows = []
    for label, scan in (("train scan", train_scan), ("other object", other_scan)):
        t0 = time.perf_counter()
        rec = reconstruct(result.module.model, scan, batch_size=64)
        infer_s = time.perf_counter() - t0
        m = evaluate(rec.object, scan.object, xcoords=scan.xcoords, ycoords=scan.ycoords, N=64)
        rows.append(
            {
                "case": name,
                "scan": label,
                "nphotons": nphotons,
                "positions": scan.n_positions,
                "train_s": round(seconds, 1),
                "train_groups_per_s": round(len(result.groups.indices) * args.epochs / seconds, 1),
                "infer_patterns_per_s": round(scan.n_positions / infer_s, 1),
                **{
                    k: round(m[k], 3)
                    for k in ("amp_ssim", "phase_ssim", "amp_psnr", "phase_psnr", "frc50")
                },
                "phase_ssim_smooth_error_removed": round(
                    phase_ssim_without_smooth_error(rec.object, scan), 3
                ),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", nargs="+", default=["pinn"], choices=sorted(CASES))
    p.add_argument("--epochs", type=int, default=TrainingConfig().nepochs)
    # The recipe is the config defaults (defined once, in ptychopinn.config).
    model_d, train_d, exec_d = ModelConfig(), TrainingConfig(), ExecutionConfig()
    p.add_argument("--batch_size", type=int, default=train_d.batch_size)
    p.add_argument("--gridsize", type=int, default=model_d.gridsize)
    p.add_argument("--n_filters_scale", type=int, default=model_d.n_filters_scale)
    p.add_argument("--learning_rate", type=float, default=exec_d.learning_rate)
    p.add_argument("--scheduler", default=exec_d.scheduler)
    p.add_argument(
        "--normalization", default=model_d.normalization, choices=["none", "batch", "group"]
    )
    p.add_argument(
        "--global_mixing", default=True, action=argparse.BooleanOptionalAction, help="(default on)"
    )
    p.add_argument("--object_size", type=int, default=256, help="256 px, step 7: 784 patterns")
    p.add_argument("--step", type=float, default=7.0)
    p.add_argument("--nphotons", type=float, default=1e6)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--seed", type=int, default=42, help="training seed (same data)")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [row for case in args.cases for row in run_case(case, args)]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
