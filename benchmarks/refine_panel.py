"""Object refinement from a flat start across probes and scan patterns.

Probes lens (defocused), disk (hard-edged) and gaussian; scans raster, spiral and random; a
camera/coins object, 784 patterns of 64x64 at 1e6 photons, 50 epochs of the default
settings. Prints positions, refinement seconds, amplitude / phase SSIM after alignment and
the factor by which the loss fell.

    python benchmarks/refine_panel.py [--epochs 50] [--nphotons 1e6]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ptychopinn.data.simulate import simulate_dataset
from ptychopinn.metrics import evaluate_on_scan
from ptychopinn.refine import ObjectRefineSettings, refine_object

PROBES = ("lens", "disk", "gaussian")
SCANS = ("raster", "spiral", "random")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--nphotons", type=float, default=1e6)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'probe':<9} {'scan':<7} {'M':>4} {'s':>5} {'amp':>6} {'phase':>6} {'loss/':>8}")
    for probe in PROBES:
        for scan in SCANS:
            kw = dict(
                N=64,
                object_size=256,
                nphotons=args.nphotons,
                seed=2,
                object_seed=1002,
                probe_kind=probe,
                scan_kind=scan,
                object_amplitude="camera",
                object_phase="coins",
            )
            if scan != "raster":
                kw.update(step=None, n_points=784)
            d = simulate_dataset(**kw)
            flat = np.ones(d.object.shape, np.complex64)
            settings = ObjectRefineSettings(epochs=args.epochs)
            r = refine_object(flat, d.probe, d.diffraction, d.coords, settings)
            m = evaluate_on_scan(r.object, d)
            print(
                f"{probe:<9} {scan:<7} {d.n_positions:>4} {r.seconds:>5.1f} "
                f"{m['amp_ssim']:>6.3f} {m['phase_ssim']:>6.3f} {r.losses[0] / r.losses[-1]:>8.3g}"
            )


if __name__ == "__main__":
    main()
