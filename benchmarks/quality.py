"""Reconstruction quality on simulated scans, measured with the project's own metrics.

Trains on one simulated scan (N=64, 1e6 photons by default), then reconstructs the training
scan and a scan of a different object taken with the same probe, and prints one table row per
(case, scan). Cases: the PINN recipe, optionally the supervised baseline on equal data and a
Poisson-vs-MAE comparison at low dose. The last column is a diagnostic (it uses the truth):
phase SSIM once the smooth part of the phase error is subtracted, to show at which scale the
phase error lives.

``--panel`` runs the recipe over a panel of scan kinds instead (object families, probes, scan
patterns, overlaps and doses; see ``PANEL``): each trains its own model on one object and is
scored on that scan, on an unseen object of the same family with the same probe and scan, and
on that unseen object at another dose (1e4 photons, or 1e6 for a 1e4 case) with no
retraining. It ends with the mean and the worst case of each row kind. ``--training_scans K``
trains each case on K objects of its kind instead (the same probe, scan pattern and dose; the
first is the scored training scan) for ``--epochs / K`` epochs, the same optimiser steps.
``--panel_nphotons D`` simulates every case at dose D (same objects, probe and scan), so
that a model trained at 1e4 photons can be set against one trained at 1e6 on the same scans.

    python benchmarks/quality.py                       # PINN recipe only (CPU: ~11 min)
    python benchmarks/quality.py --cases pinn supervised mae_low_dose nll_low_dose
    python benchmarks/quality.py --panel               # 7 scan kinds (CPU: ~73 min)
    python benchmarks/quality.py --panel --training_scans 4 --epochs 32
    python benchmarks/quality.py --panel --panel_cases 0 --panel_nphotons 1e4
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.data.types import PtychoData
from ptychopinn.metrics import align, evaluate, evaluate_on_scan, scan_scoring_mask
from ptychopinn.workflows.infer import reconstruct
from ptychopinn.workflows.self_augment import stage_epochs
from ptychopinn.workflows.train import train


@dataclass(frozen=True)
class PanelScan:
    """One kind of scan: SimulationConfig fields of the training scan, and the fields that
    make the unseen scan a different object (same probe, scan pattern and dose)."""

    train: dict = field(default_factory=dict)
    unseen: dict = field(default_factory=lambda: {"object_seed": 7})
    #: The fields that make each further training object (``--training_scans K``: the first
    #: K - 1 of them), none of them the unseen one.
    more: tuple[dict, ...] = tuple({"object_seed": 101 + j} for j in range(15))


_FREE_SCAN = dict(step=None, n_points=784)  # spiral / random: as many positions as the raster
_NATURAL = dict(object_amplitude="astronaut", object_phase="camera")
_NATURAL_UNSEEN = dict(object_amplitude="chelsea", object_phase="coins")
_NATURAL_MORE = (  # other photographs than the training and unseen pairs
    dict(object_amplitude="coffee", object_phase="moon"),
    dict(object_amplitude="rocket", object_phase="gravel"),
    dict(object_amplitude="immunohistochemistry", object_phase="brick"),
)

#: The panel: object families, probes, scan patterns, overlaps and doses. 784 patterns of
#: 64x64 unless said (low overlap: 400), 1e6 photons unless said.
PANEL = {
    "grf/lines, lens, raster": PanelScan(),
    "natural, lens, spiral": PanelScan(
        train=dict(_NATURAL, scan_kind="spiral", **_FREE_SCAN),
        unseen=_NATURAL_UNSEEN,
        more=_NATURAL_MORE,
    ),
    "sparse, weak phase, zone plate": PanelScan(
        train=dict(
            object_amplitude="disks",
            object_phase="disks",
            phase_range=(-0.3, 0.3),
            probe_kind="zoneplate",
        )
    ),
    "strong phase, symmetric lens, random": PanelScan(
        train=dict(
            object_amplitude="grf",
            amplitude_range=(0.8, 1.0),
            object_phase="grf",
            phase_range=(-2.5, 2.5),
            probe_aberration=0.0,
            scan_kind="random",
            **_FREE_SCAN,
        )
    ),
    "low overlap (step 10)": PanelScan(train=dict(step=10.0)),
    "natural, 1e4 photons": PanelScan(
        train=dict(_NATURAL, nphotons=1e4), unseen=_NATURAL_UNSEEN, more=_NATURAL_MORE
    ),
    "1e9 photons, zone plate, spiral": PanelScan(
        train=dict(nphotons=1e9, probe_kind="zoneplate", scan_kind="spiral", **_FREE_SCAN)
    ),
}

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
    mask = scan_scoring_mask(scan.xcoords, scan.ycoords, scan.N, scan.object.shape, scan.probe)
    aligned, _ = align(obj, scan.object, mask=mask)
    error = np.where(mask, np.angle(aligned * np.conj(scan.object)), 0.0)
    coverage = ndimage.gaussian_filter(mask.astype(np.float64), SMOOTH_ERROR_SIGMA)
    smooth = ndimage.gaussian_filter(error, SMOOTH_ERROR_SIGMA) / np.maximum(coverage, 1e-6)
    corrected = aligned * np.exp(-1j * smooth)
    m = evaluate(corrected, scan.object, mask=mask)
    return m["phase_ssim"]


def train_model(
    train_scans: PtychoData | list[PtychoData],
    args: argparse.Namespace,
    *,
    seed: int,
    model_type: str,
    epochs: int | None = None,
    **spec,
):
    """Train the recipe (with the benchmark's flags) on one scan or several: (result,
    seconds). ``epochs``: default ``args.epochs``."""
    model = ModelConfig(
        N=64,
        gridsize=args.gridsize,
        n_filters_scale=args.n_filters_scale,
        model_type=model_type,
        normalization=args.normalization,
        global_mixing=args.global_mixing,
        per_pattern_network=args.per_pattern_network,
        phase_head=args.phase_head,
    )
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainingConfig(
            model=model,
            nepochs=args.epochs if epochs is None else epochs,
            batch_size=args.batch_size,
            n_groups=None,
            groups_per_position=args.groups_per_position,
            dose_augmentation=args.dose_augmentation,
            dose_augmentation_min=args.dose_augmentation_min,
            neighbor_count=args.neighbor_count,
            output_dir=out,
            seed=seed,
            learning_rate=args.learning_rate,
            scheduler=args.scheduler,
            self_augmentation=args.self_augmentation,
            **spec,
        )
        ex = ExecutionConfig(
            accelerator=args.accelerator,
            precision=args.precision,
            logger="none",
            enable_progress_bar=False,
            enable_checkpointing=False,
        )
        start = time.perf_counter()
        result = train(train_scans, cfg, ex)
        return result, time.perf_counter() - start


def run_case(name: str, args: argparse.Namespace) -> list[dict]:
    spec = dict(CASES[name])
    nphotons = spec.pop("nphotons", args.nphotons)
    sim = dict(N=64, object_size=args.object_size, step=args.step, nphotons=nphotons)
    train_scan = simulate_dataset(seed=1, **sim)
    # Same seed: same scan and probe (up to the dose scale); object_seed: a different object.
    other_scan = simulate_dataset(seed=1, object_seed=7, **sim)
    result, seconds = train_model(train_scan, args, seed=args.seed, **spec)
    scans = (("train scan", train_scan), ("other object", other_scan))
    return score_rows(name, scans, result, seconds, args.epochs, args.adapt_batch_norm)


def _case_simulation(
    name: str,
    *,
    object_size: int = 256,
    step: float = 7.0,
    nphotons: float = 1e6,
    dose: float | None = None,
) -> dict:
    """SimulationConfig fields of panel case ``name``'s training scan (but its seed);
    ``dose``: this many photons instead of the case's own (same objects, probe and scan)."""
    sim = dict(N=64, object_size=object_size, step=step, nphotons=nphotons)
    sim.update(PANEL[name].train)
    if dose is not None:
        sim["nphotons"] = dose
    return sim


def panel_scans(index: int, name: str, **scan_size) -> tuple[tuple[str, PtychoData], ...]:
    """The three labelled scans of panel case ``index``: its training scan, an unseen object
    (same probe, scan and dose) and that object at another dose (1e4 photons, or 1e6 for a
    case at 1e4). ``scan_size``: ``object_size``, ``step``, ``nphotons``."""
    sim = _case_simulation(name, **scan_size)
    # Each case its own probe jitter and scan jitter.
    train_scan = simulate_dataset(seed=1 + index, **sim)
    unseen = dict(sim, **PANEL[name].unseen)
    unseen_scan = simulate_dataset(seed=1 + index, **unseen)
    other_dose = 1e6 if sim["nphotons"] <= 1e4 else 1e4
    dose_scan = simulate_dataset(seed=1 + index, **dict(unseen, nphotons=other_dose))
    return (
        ("train scan", train_scan),
        ("unseen object", unseen_scan),
        (f"unseen at {other_dose:.0e}", dose_scan),
    )


def further_training_scans(index: int, name: str, count: int, **scan_size) -> list[PtychoData]:
    """``count`` more training scans of panel case ``index``: other objects of its family,
    measured with the training scan's probe, positions and dose."""
    more = PANEL[name].more
    if count > len(more):
        raise SystemExit(f"--training_scans: case {name!r} has {len(more) + 1} training objects")
    sim = _case_simulation(name, **scan_size)
    return [simulate_dataset(seed=1 + index, **dict(sim, **fields)) for fields in more[:count]]


def run_panel_case(index: int, name: str, args: argparse.Namespace) -> list[dict]:
    """Train on one panel scan (and ``--training_scans`` - 1 more of its kind, for
    ``--epochs / --training_scans`` epochs: the same optimiser steps); score the first, the
    unseen object, and that object at another dose."""
    size = dict(
        object_size=args.object_size,
        step=args.step,
        nphotons=args.nphotons,
        dose=args.panel_nphotons,
    )
    scans = panel_scans(index, name, **size)
    training = [scans[0][1], *further_training_scans(index, name, args.training_scans - 1, **size)]
    epochs = max(1, round(args.epochs / len(training)))
    # Each case its own training seed.
    result, seconds = train_model(
        training, args, seed=args.seed + index, model_type="pinn", epochs=epochs
    )
    return score_rows(name, scans, result, seconds, epochs, args.adapt_batch_norm)


def score_rows(
    case: str, scans, result, seconds: float, epochs: int, adapt_batch_norm: bool = False
) -> list[dict]:
    rows = []
    for label, scan in scans:
        t0 = time.perf_counter()
        rec = reconstruct(
            result.module.model, scan, batch_size=64, adapt_batch_norm=adapt_batch_norm
        )
        infer_s = time.perf_counter() - t0
        m = evaluate_on_scan(rec.object, scan)
        rows.append(
            {
                "case": case,
                "scan": label,
                "nphotons": float(scan.metadata.get("nphotons", float("nan"))),
                "positions": scan.n_positions,
                "train_s": round(seconds, 1),
                "train_groups_per_s": round(groups_trained(result, epochs) / seconds, 1),
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


def groups_trained(result, epochs: int) -> int:
    """Groups passed through the network in training (both stages with self-augmentation,
    whose final groups include the copies')."""
    groups = len(result.groups.indices)
    copies = result.module.training_config.self_augmentation
    if not copies:
        return groups * epochs
    first, second = stage_epochs(epochs, copies)
    return groups // (1 + copies) * first + groups * second


def print_rows(rows: list[dict], header: bool = True) -> None:
    keys = list(rows[0])
    if header:
        print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys), flush=True)


def print_summary(rows: list[dict]) -> None:
    """Mean and worst case of amplitude / phase SSIM for each row kind over the panel."""
    kinds = {"train scan": [], "unseen object": [], "unseen at another dose": []}
    for row in rows:
        kind = "unseen at another dose" if row["scan"].startswith("unseen at") else row["scan"]
        kinds[kind].append(row)
    print("\npanel summary (amplitude / phase SSIM) | cases | mean | worst")
    for kind, group in kinds.items():
        if not group:
            continue
        amp = np.array([r["amp_ssim"] for r in group])
        phase = np.array([r["phase_ssim"] for r in group])
        worst = group[int(np.argmin(amp + phase))]["case"]
        print(
            f"{kind} | {len(group)} | {amp.mean():.3f} / {phase.mean():.3f} | "
            f"{amp.min():.3f} / {phase.min():.3f} (lowest sum: {worst})"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", nargs="+", default=["pinn"], choices=sorted(CASES))
    p.add_argument("--panel", action="store_true", help="run the recipe over PANEL instead")
    p.add_argument(
        "--panel_cases",
        nargs="+",
        type=int,
        default=None,
        metavar="I",
        help=f"only these panel cases (0 to {len(PANEL) - 1}, in the order of PANEL)",
    )
    p.add_argument("--epochs", type=int, default=TrainingConfig().nepochs)
    # The recipe is the config defaults (defined once, in ptychopinn.config).
    model_d, train_d = ModelConfig(), TrainingConfig()
    p.add_argument("--batch_size", type=int, default=train_d.batch_size)
    p.add_argument("--gridsize", type=int, default=model_d.gridsize)
    p.add_argument("--groups_per_position", type=float, default=train_d.groups_per_position)
    p.add_argument(
        "--neighbor_count", type=int, default=None, help="(default: the config's, C + 3)"
    )
    p.add_argument("--n_filters_scale", type=int, default=model_d.n_filters_scale)
    p.add_argument("--learning_rate", type=float, default=train_d.learning_rate)
    p.add_argument("--scheduler", default=train_d.scheduler, choices=TrainingConfig.SCHEDULERS)
    p.add_argument(
        "--normalization", default=model_d.normalization, choices=["none", "batch", "group"]
    )
    p.add_argument(
        "--global_mixing", default=True, action=argparse.BooleanOptionalAction, help="(default on)"
    )
    p.add_argument("--dose_augmentation", type=float, default=train_d.dose_augmentation)
    p.add_argument("--dose_augmentation_min", type=float, default=train_d.dose_augmentation_min)
    p.add_argument(
        "--per_pattern_network",
        default=model_d.per_pattern_network,
        action=argparse.BooleanOptionalAction,
        help="one network pass per pattern, trained on the overlap groups",
    )
    p.add_argument("--phase_head", default=model_d.phase_head, choices=ModelConfig.PHASE_HEADS)
    p.add_argument(
        "--self_augmentation",
        type=int,
        default=train_d.self_augmentation,
        help="mirrored copies of the first reconstruction trained on (0-3)",
    )
    p.add_argument(
        "--adapt_batch_norm",
        action="store_true",
        help="reconstruct with each scan's own batch-norm statistics (ptycho_inference's option)",
    )
    p.add_argument(
        "--training_scans",
        type=int,
        default=1,
        metavar="K",
        help="panel: train on K objects of each case's kind (same probe, scan, dose) for "
        "--epochs / K epochs",
    )
    p.add_argument("--object_size", type=int, default=256, help="256 px, step 7: 784 patterns")
    p.add_argument("--step", type=float, default=7.0)
    p.add_argument("--nphotons", type=float, default=1e6)
    p.add_argument(
        "--panel_nphotons",
        type=float,
        default=None,
        help="panel: every case's training and unseen scans at this dose instead of its own "
        "(the same objects, probe and scan; the other-dose scan: 1e4, or 1e6 at 1e4 or below)",
    )
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--precision", default=ExecutionConfig().precision, help="(default: auto)")
    p.add_argument("--seed", type=int, default=42, help="training seed (same data)")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    for chatty in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.panel:
        names = list(PANEL)
        chosen = args.panel_cases if args.panel_cases is not None else range(len(names))
        rows = []
        for i in chosen:
            case_rows = run_panel_case(i, names[i], args)
            print_rows(case_rows, header=not rows)
            rows += case_rows
        print_summary(rows)
    else:
        rows = [row for case in args.cases for row in run_case(case, args)]
        print_rows(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
