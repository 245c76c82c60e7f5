"""Object refinement from a flat start on a small panel of simulated scans: SSIM per epoch.

Used to choose the defaults of :class:`ptychopinn.refine.ObjectRefineSettings`. Each
setting runs on every (object family, dose, seed) of the panel; the table gives the mean and
the worst case at each reported epoch, plus the refinement seconds (2 CPU threads).

    python benchmarks/refine_settings.py                      # the defaults
    python benchmarks/refine_settings.py --settings '{"momentum": 0}' '{"noise_model": "amplitude"}'
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.metrics import evaluate_on_scan
from ptychopinn.refine import ObjectRefineSettings, refine_object

PANEL = (("astronaut", "coins"), ("grf", "lines"), ("camera", "moon"))
REPORT = (2, 5, 10, 20, 50, 100)


def run(setting: dict, epochs: int, doses, seeds) -> dict[int, list[tuple[float, float, float]]]:
    """{epoch: [(seconds, amp SSIM, phase SSIM) per panel scan]}."""
    points: dict[int, list] = {}
    for amp, phase in PANEL:
        for dose in doses:
            for seed in seeds:
                d = simulate_dataset(
                    N=64,
                    object_size=256,
                    nphotons=dose,
                    seed=seed,
                    object_seed=seed + 1000,
                    object_amplitude=amp,
                    object_phase=phase,
                )

                def on_epoch(epoch, get, seconds, d=d):
                    if epoch in REPORT or epoch == epochs:
                        m = evaluate_on_scan(get(), d)
                        points.setdefault(epoch, []).append(
                            (seconds, m["amp_ssim"], m["phase_ssim"])
                        )

                settings = ObjectRefineSettings(**{**setting, "epochs": epochs})
                flat = np.ones(d.object.shape, np.complex64)
                refine_object(flat, d.probe, d.diffraction, d.coords, settings, on_epoch=on_epoch)
    return points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=["{}"], help="ObjectRefineSettings JSON")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--doses", type=float, nargs="+", default=[1e4, 1e6])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for text in args.settings:
        setting = json.loads(text)
        points = run(setting, args.epochs, args.doses, args.seeds)
        print(f"settings {setting or 'defaults'} (panel of {len(next(iter(points.values())))})")
        print(
            f"{'epoch':>5} {'seconds':>8} {'amp mean':>8} {'amp min':>8} "
            f"{'ph mean':>8} {'ph min':>8}"
        )
        for epoch in sorted(points):
            a = np.array(points[epoch])
            print(
                f"{epoch:>5} {a[:, 0].mean():>8.2f} {a[:, 1].mean():>8.3f} {a[:, 1].min():>8.3f} "
                f"{a[:, 2].mean():>8.3f} {a[:, 2].min():>8.3f}"
            )


if __name__ == "__main__":
    main()
