"""What the panel's scans give without learning: object refinement from a flat start.

For each case of ``quality.py``'s panel (the same unseen object, and that object at the other
dose), runs the project's object refinement (``--refine object``'s
method, probe and positions known, default settings) from a flat object and prints amplitude /
phase SSIM after alignment. It is the physics reference for the PINN's figures: how much of
the loss between doses is in the data rather than in the network.

    python benchmarks/panel_iterative_reference.py                    # 50 and 200 epochs
    python benchmarks/panel_iterative_reference.py --epochs 50 --panel_cases 0 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from quality import PANEL, panel_scans

from ptychopinn.metrics import evaluate_on_scan
from ptychopinn.refine import ObjectRefineSettings, refine_object


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, nargs="+", default=[50, 200])
    p.add_argument("--panel_cases", type=int, nargs="+", default=None, metavar="I")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = list(PANEL)
    chosen = args.panel_cases if args.panel_cases is not None else range(len(names))
    print(f"{'case':<38} {'scan':<15} {'epochs':>6} {'s':>6}  amplitude / phase SSIM")
    for index in chosen:
        for label, scan in panel_scans(index, names[index])[1:]:
            for epochs in args.epochs:
                flat = np.ones(scan.object.shape, np.complex64)
                settings = ObjectRefineSettings(epochs=epochs)
                r = refine_object(flat, scan.probe, scan.diffraction, scan.coords, settings)
                m = evaluate_on_scan(r.object, scan)
                print(
                    f"{names[index]:<38} {label:<15} {epochs:>6} {r.seconds:>6.1f}  "
                    f"{m['amp_ssim']:.3f} / {m['phase_ssim']:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
