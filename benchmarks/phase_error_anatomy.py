"""Where a trained model's phase error on a simulated scan lives (a diagnostic: needs the truth).

Reconstructs the scan patch by patch, then stitches the network's patches again after
correcting each of them in one of these ways, and prints amplitude / phase SSIM:

- ``oracle piston``: each patch's constant phase set to the truth's (probe-weighted). A
  single pattern cannot tell this constant (``|F(P O e^{ic})|^2 = |F(P O)|^2``), so the
  network must guess it from the pattern's content; the gain says how much the guess costs.
- ``oracle piston + tilt``: the patch's constant and linear phase both set to the truth's.
- ``overlap pistons``: the constants chosen from the data alone, so that overlapping patches
  agree (weighted least squares over all overlapping pairs, a little pull to the network's
  own constants). A loss means the patches' other errors bias the pairwise constants, and
  chaining them across the scan adds up to a smooth error worse than the network's guess.
- ``centre-of-mass tilts``: each patch's linear phase chosen so that its simulated pattern
  has the measured pattern's centre of mass. Under a curved (defocused) probe the centre of
  mass mixes the object's amplitude asymmetry with its phase tilt, so this is not the tilt.
- ``fitted tilts``: each patch's linear phase fitted to its whole measured pattern (Poisson
  deviance), then with overlap pistons on top.

    python benchmarks/phase_error_anatomy.py --model_path outputs/quickstart/model \
        --data outputs/quickstart/test.npz
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch
from scipy.spatial import cKDTree

from ptychopinn.bundle import load_model
from ptychopinn.data.npz import load_npz
from ptychopinn.metrics import evaluate_on_scan
from ptychopinn.physics.forward import diffraction_intensity
from ptychopinn.physics.patches import PatchAccumulator, extract_patches, scatter_patches
from ptychopinn.workflows.infer import reconstruct


class Scan:
    """A scan, its network patches, measured intensities and the stitching (probe-intensity
    weights)."""

    def __init__(self, model, data) -> None:
        if data.object is None:
            raise SystemExit(f"{data.source}: the diagnostic needs the true object (objectGuess)")
        self.data, self.N = data, data.N
        self.patches = torch.from_numpy(reconstruct(model, data, return_patches=True).patches)
        self.probe = model.probe.detach().to(torch.complex64)
        self.weights = (self.probe.abs() ** 2).float()
        self.centres = torch.from_numpy(data.coords).float()
        self.truth = extract_patches(
            torch.from_numpy(data.object.astype(np.complex64)), self.centres, self.N
        )
        self.measured = torch.from_numpy(np.asarray(data.diffraction, dtype=np.float32)) ** 2

    def placed(self, patches: torch.Tensor) -> torch.Tensor:
        """Each weighted patch on a canvas of its own, flattened: (M, H * W)."""
        shape = self.data.object.shape
        weighted = patches * self.weights
        return torch.stack(
            [
                scatter_patches(weighted[k : k + 1], self.centres[k : k + 1], shape).reshape(-1)
                for k in range(len(patches))
            ]
        )

    def stitch(self, patches: torch.Tensor) -> np.ndarray:
        acc = PatchAccumulator(self.data.object.shape, self.N)
        acc.add(patches, self.centres, self.weights)
        return acc.result()[0].numpy()

    def score(self, patches: torch.Tensor, label: str) -> None:
        d = self.data
        m = evaluate_on_scan(self.stitch(patches), d)
        print(f"{label:<38} {m['amp_ssim']:.3f} / {m['phase_ssim']:.3f}", flush=True)

    def ramps(self, a: torch.Tensor) -> torch.Tensor:
        """exp(i 2 pi (ax x + ay y) / N) per patch, x and y from the patch centre."""
        x = torch.arange(self.N, dtype=torch.float32) - self.N / 2
        xx, yy = torch.meshgrid(x, x, indexing="xy")
        phase = a[:, 0, None, None] * xx + a[:, 1, None, None] * yy
        return torch.exp(2j * np.pi * phase / self.N)


def oracle_pistons(s: Scan, patches: torch.Tensor) -> torch.Tensor:
    c = (s.weights * s.truth * patches.conj()).sum((-1, -2))
    return patches * (c / c.abs().clamp_min(1e-12))[:, None, None]


def oracle_tilts(s: Scan, patches: torch.Tensor) -> torch.Tensor:
    """Least-squares plane of the (piston-corrected) phase error under the probe, removed."""
    n = s.N
    x = torch.arange(n, dtype=torch.float64) - n / 2
    xx, yy = torch.meshgrid(x, x, indexing="xy")
    design = torch.stack([torch.ones_like(xx), xx, yy], -1).reshape(-1, 3)
    w = s.weights.reshape(-1).double().sqrt()[:, None]
    error = torch.angle(patches * s.truth.conj()).reshape(len(patches), -1).double()
    coef = torch.linalg.lstsq((design * w)[None], (error.T * w).T[..., None]).solution[..., 0]
    plane = (coef @ design.T).reshape(-1, n, n).float()
    return patches * torch.exp(-1j * plane)


def overlap_pistons(s: Scan, patches: torch.Tensor, pull: float = 1e-2) -> torch.Tensor:
    placed = s.placed(patches)
    pairs = np.array(sorted(cKDTree(s.data.coords).query_pairs(r=0.8 * s.N)))
    i, j = pairs[:, 0], pairs[:, 1]
    overlap = np.concatenate(
        [
            (placed[i[k : k + 256]] * placed[j[k : k + 256]].conj()).sum(-1).numpy()
            for k in range(0, len(pairs), 256)
        ]
    )
    c, d = np.abs(overlap), -np.angle(overlap)
    m = len(patches)
    rows, cols = np.r_[i, j, i, j], np.r_[i, j, j, i]
    lap = sp.coo_matrix((np.r_[c, c, -c, -c], (rows, cols)), shape=(m, m)).tocsr()
    b = np.zeros(m)
    np.add.at(b, i, c * d)
    np.add.at(b, j, -c * d)
    phi = spl.spsolve(lap + pull * np.median(lap.diagonal()) * sp.eye(m), b)
    return patches * torch.from_numpy(np.exp(1j * phi)).to(torch.complex64)[:, None, None]


def centre_of_mass_tilts(s: Scan, patches: torch.Tensor, iterations: int = 4) -> torch.Tensor:
    k = torch.arange(s.N, dtype=torch.float32)

    def com(intensity: torch.Tensor) -> torch.Tensor:
        x = (intensity.sum(-2) * k).sum(-1)
        y = (intensity.sum(-1) * k).sum(-1)
        return torch.stack([x, y], -1) / intensity.sum((-1, -2))[:, None]

    measured = com(s.measured)
    a = torch.zeros(len(patches), 2)
    for _ in range(iterations):
        a = a + measured - com(diffraction_intensity(patches * s.ramps(a), s.probe))
    return patches * s.ramps(a)


def fitted_tilts(s: Scan, patches: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """Each patch's linear phase fitted to its whole measured pattern (Poisson deviance)."""
    measured = s.measured
    a = torch.zeros(len(patches), 2, requires_grad=True)
    scale = measured.sum((-1, -2)) / diffraction_intensity(patches, s.probe).sum((-1, -2))
    opt = torch.optim.Adam([a], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        model = diffraction_intensity(patches * s.ramps(a), s.probe) * scale[:, None, None]
        loss = (model - measured * torch.log(model + 1e-6)).sum() / len(patches)
        loss.backward()
        opt.step()
    return patches * s.ramps(a.detach())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_path", required=True)
    p.add_argument("--data", required=True, help="NPZ scan with its true object")
    args = p.parse_args()
    s = Scan(load_model(args.model_path).model, load_npz(args.data))
    print(f"{'patches stitched':<38} amplitude / phase SSIM")
    s.score(s.patches, "as the network gives them")
    pistons = oracle_pistons(s, s.patches)
    s.score(pistons, "oracle piston")
    s.score(oracle_tilts(s, pistons), "oracle piston + tilt")
    s.score(overlap_pistons(s, s.patches), "overlap pistons (from the data)")
    s.score(centre_of_mass_tilts(s, s.patches), "centre-of-mass tilts (from the data)")
    tilted = fitted_tilts(s, s.patches)
    s.score(tilted, "fitted tilts (from the data)")
    s.score(overlap_pistons(s, tilted), "fitted tilts + overlap pistons")


if __name__ == "__main__":
    main()
