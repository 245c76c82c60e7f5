"""Inference: predict a patch for every scan position and stitch them into the object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ptychopinn.data.grouping import group_all_positions
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import DataValidationError
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.physics.patches import PatchAccumulator


@dataclass
class Reconstruction:
    """A stitched object with the positions it was stitched at."""

    object: np.ndarray  # (H, W) complex64
    weights: np.ndarray  # (H, W) float32 accumulated stitching weight
    xcoords: np.ndarray
    ycoords: np.ndarray
    patches: np.ndarray | None = None  # (M, N, N) complex64 when requested


@torch.inference_mode()
def reconstruct(
    model: PtychoPINN,
    data: PtychoData,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    weighting: str = "probe",
    return_patches: bool = False,
    canvas_shape: tuple[int, int] | None = None,
    progress: bool = False,
) -> Reconstruction:
    """Predict one patch per scan position and stitch all of them on the object canvas.

    Every position is the anchor of its own group (its nearest neighbours complete the group
    when ``gridsize > 1``), so the whole scan is reconstructed. Patches are streamed into the
    canvas batch by batch; memory is bounded by the batch and the canvas, not the scan.
    ``weighting='probe'`` weights each patch by ``|P|^2`` (the object is known where it is lit).
    """
    N = model.config.N
    if data.N != N:
        raise DataValidationError(
            f"{data.source}: patterns are {data.N}x{data.N} but the model was trained for N={N}"
        )
    device = torch.device(device)
    model = model.to(device).eval()
    groups = group_all_positions(data.coords, model.config.gridsize)
    canvas_shape = canvas_shape or data.canvas_shape()
    weights = (model.probe.abs() ** 2).float() if weighting == "probe" else None
    acc = PatchAccumulator(canvas_shape, N, device=device)
    amplitudes = torch.from_numpy(np.ascontiguousarray(data.diffraction, dtype=np.float32))
    indices = torch.from_numpy(groups.indices)
    offsets = torch.from_numpy(groups.offsets.astype(np.float32))
    coords = torch.from_numpy(data.coords)
    kept = [] if return_patches else None
    starts = range(0, len(indices), batch_size)
    for start in tqdm(starts, desc="reconstructing", unit="batch", disable=not progress):
        idx = indices[start : start + batch_size]
        x = amplitudes[idx].to(device, non_blocking=True)
        off = offsets[start : start + batch_size].to(device)
        patches = model.predict_patches(x, off)[:, 0]
        acc.add(patches, coords[idx[:, 0]].to(device), weights)
        if kept is not None:
            kept.append(patches.cpu())
    canvas, weight_sum = acc.result()
    return Reconstruction(
        object=canvas.cpu().numpy().astype(np.complex64),
        weights=weight_sum.cpu().numpy().astype(np.float32),
        xcoords=data.xcoords.copy(),
        ycoords=data.ycoords.copy(),
        patches=None if kept is None else torch.cat(kept).numpy(),
    )
