"""Reconstruction quality with the settings Ptychodus 1.7.0 sends by default.

Builds the training configs with Ptychodus' own parent-side builders from its default
settings (``PtychoPINN``: gridsize 1, filters ×2, batch 16, 50 epochs; ``PtychoPINN-Torch``:
C = 4, 7 groups per position, filters ×2, batch 16, 50 epochs, no batch norm), translates
them as the front-ends do, trains on a simulated scan and scores the training scan and a scan
of another object with the same probe. Prints one row per (front-end, seed) and the mean
and worst case over seeds.

    python benchmarks/ptychodus_defaults.py --frontends ptychopinn --seeds 0 1 2
    python benchmarks/ptychodus_defaults.py --N 64 --object_size 256   # the full-size scan
    python benchmarks/ptychodus_defaults.py --frontends recipe ...      # the engine's recipe

Needs ``pip install 'ptychopinn[ptychodus]'``. ``--epochs`` overrides Ptychodus' 50 (say so
when you report the figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

from seed_sweep import add_scan_arguments, quiet_setup, seed_summary

from ptychopinn.config import ExecutionConfig, ModelConfig, TrainingConfig, from_dict, to_dict
from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.metrics import evaluate_on_scan
from ptychopinn.workflows.infer import reconstruct
from ptychopinn.workflows.train import train

#: The two Ptychodus front-ends, and the engine's own recipe (the config defaults) on the same
#: scans for comparison.
FRONTENDS = ("ptychopinn", "ptychopinn-torch", "recipe")


def _tf_configs(n: int) -> tuple[TrainingConfig, ExecutionConfig]:
    """What the ``PtychoPINN`` front-end trains: Ptychodus' builder, then what
    ``run_cdi_example`` makes of it (gridsize 1: one pattern per pass, 2x2 overlap groups)."""
    from ptychodus.api.settings import SettingsRegistry
    from ptychodus.model.ptychopinn import reconstructor as pinn
    from ptychodus.model.ptychopinn import settings as pinn_settings

    registry = SettingsRegistry()
    cfg = pinn._build_training_config(
        pinn_settings.PtychoPINNModelSettings(registry),
        pinn_settings.PtychoPINNTrainingSettings(registry),
        "PINN",
    )
    from ptycho.workflows.components import resolve_training_config

    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, N=n))
    return resolve_training_config(cfg, n), ExecutionConfig()


def _torch_configs(n: int) -> tuple[TrainingConfig, ExecutionConfig]:
    """What the ``PtychoPINN-Torch`` front-end trains: Ptychodus' builder, then translate."""
    from ptychodus.api.settings import SettingsRegistry
    from ptychodus.model.ptychopinn_torch import reconstructor as torch_rec
    from ptychodus.model.ptychopinn_torch import settings as ts

    from ptycho_torch.translate import Configs, core_execution_config, core_training_config

    registry = SettingsRegistry()
    data, model, training, inference, _ = torch_rec._build_configs(
        "Unsupervised",
        ts.PtychoPINNTorchDataSettings(registry),
        ts.PtychoPINNTorchModelSettings(registry),
        ts.PtychoPINNTorchTrainingSettings(registry),
        ts.PtychoPINNTorchInferenceSettings(registry),
    )
    data.N = n
    cfg = Configs(data, model, training, inference)
    return core_training_config(cfg), core_execution_config(
        cfg, logger_kind="none", device="cpu", quiet=True
    )


def run(frontend: str, seed: int, args: argparse.Namespace) -> dict:
    sim = dict(N=args.N, object_size=args.object_size, step=args.step, jitter=0.3)
    scan = simulate_dataset(seed=args.scan_seed, nphotons=args.nphotons, **sim)
    other = simulate_dataset(
        seed=args.scan_seed, object_seed=args.scan_seed + 1000, nphotons=args.nphotons, **sim
    )
    scored = [("train", scan), ("unseen", other)]
    if args.other_dose:
        dose = simulate_dataset(
            seed=args.scan_seed, object_seed=args.scan_seed + 1000, nphotons=args.other_dose, **sim
        )
        scored.append(("unseen_other_dose", dose))
    if frontend == "ptychopinn":
        training, execution = _tf_configs(args.N)
    elif frontend == "recipe":
        training, execution = TrainingConfig(model=ModelConfig(N=args.N)), ExecutionConfig()
    else:
        training, execution = _torch_configs(args.N)
    with tempfile.TemporaryDirectory() as out:
        values = to_dict(training)
        values.update(output_dir=out, seed=seed)
        if args.epochs:
            values["nepochs"] = args.epochs
        for field, value in args.overrides.items():
            section = values["model"] if field in values["model"] else values
            section[field] = value
        training = from_dict(TrainingConfig, values, source=frontend)
        ex = to_dict(execution)
        ex.update(
            accelerator="cpu", logger="none", enable_progress_bar=False, enable_checkpointing=False
        )
        execution = from_dict(ExecutionConfig, ex, source=frontend)
        t0 = time.perf_counter()
        result = train(scan, training, execution)
        seconds = time.perf_counter() - t0
    row = {
        "frontend": frontend,
        "seed": seed,
        "gridsize": training.model.gridsize,
        "filters": training.model.n_filters_scale,
        "batch": training.batch_size,
        "epochs": training.nepochs,
        "groups": len(result.groups.indices),
        "train_s": round(seconds, 1),
    }
    model = result.module.model
    if frontend == "ptychopinn":
        # Ptychodus groups the scan with its own GridSize (1): one pattern per pass, no
        # overlap constraint at reconstruction (a per-pattern network takes any grouping).
        model.config = dataclasses.replace(model.config, gridsize=1)
    for label, s in scored:
        rec = reconstruct(model, s)
        m = evaluate_on_scan(rec.object, s)
        row[f"{label}_amp_ssim"] = round(m["amp_ssim"], 3)
        row[f"{label}_phase_ssim"] = round(m["phase_ssim"], 3)
    return row


def _field_value(text: str) -> tuple[str, str]:
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise SystemExit(f"--set: expected FIELD=VALUE, found {text!r}")
    return field, value


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frontends", nargs="+", choices=FRONTENDS, default=list(FRONTENDS[:2]))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    add_scan_arguments(p)
    p.add_argument("--scan_seed", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="override Ptychodus' 50 epochs")
    p.add_argument(
        "--other_dose",
        type=float,
        default=None,
        help="also score the unseen object at this many photons, without retraining",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="override training or model fields of every front-end, e.g. groups_per_position=4",
    )
    args = p.parse_args()
    args.overrides = dict(_field_value(text) for text in args.set)
    quiet_setup(args)
    keys = ["train_amp_ssim", "train_phase_ssim", "unseen_amp_ssim", "unseen_phase_ssim"]
    if args.other_dose:
        keys += ["unseen_other_dose_amp_ssim", "unseen_other_dose_phase_ssim"]
    for frontend in args.frontends:
        rows = []
        for seed in args.seeds:
            rows.append(run(frontend, seed, args))
            print(json.dumps(rows[-1]), flush=True)
        summary = {"frontend": frontend, "seeds": len(rows), **seed_summary(rows, keys)}
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
