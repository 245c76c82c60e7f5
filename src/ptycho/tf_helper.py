"""``ptycho.tf_helper.reassemble_position``: stitch predicted patches with the core stitcher.

(No TensorFlow: the name is the legacy module's.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ptycho._adapt import scan_canvas_shape
from ptychopinn.errors import DataValidationError
from ptychopinn.physics.patches import stitch_patches

__all__ = ["reassemble_position"]


def _patch_stack(obj_tensor: Any) -> tuple[np.ndarray, int]:
    """(G, N, N, C) or (G, N, N) patches -> ((G*C, N, N) complex64, C), member-major per group."""
    if isinstance(obj_tensor, torch.Tensor):
        obj_tensor = obj_tensor.detach().cpu().numpy()
    obj = np.asarray(obj_tensor)
    if obj.ndim == 3:
        obj = obj[..., None]
    if obj.ndim != 4 or obj.shape[1] != obj.shape[2]:
        raise DataValidationError(
            f"reassemble_position: expected patches (G, N, N, C) or (G, N, N), found shape "
            f"{obj.shape}"
        )
    c = obj.shape[-1]
    patches = np.moveaxis(obj, -1, 1).reshape(-1, obj.shape[1], obj.shape[2])
    return np.ascontiguousarray(patches, dtype=np.complex64), c


def _centres(global_offsets: Any, g: int, c: int) -> np.ndarray:
    """Per-patch [x, y] centres (G*C, 2) from (G, 1, 2, C), (G, 2, C) or (G, 2) positions."""
    pos = np.asarray(global_offsets, dtype=np.float64)
    if pos.ndim == 4 and pos.shape[1] == 1:
        pos = pos[:, 0]
    if pos.ndim == 2:
        pos = pos[:, :, None]
    if pos.ndim != 3 or pos.shape[0] != g or pos.shape[1] != 2:
        raise DataValidationError(
            f"reassemble_position: expected global_offsets (G, 1, 2, C) with G={g}, found "
            f"shape {np.shape(global_offsets)}"
        )
    if pos.shape[2] != c:
        raise DataValidationError(
            f"reassemble_position: patches have C={c} channels but global_offsets gives "
            f"{pos.shape[2]} position(s) per group; pass the absolute position of every member "
            "(the global_offsets of a ptycho.loader container)"
        )
    return np.ascontiguousarray(np.transpose(pos, (0, 2, 1)).reshape(-1, 2))


def _window(n: int, m: int | None) -> torch.Tensor:
    """Weights selecting the central M x M pixels of each patch (the legacy crop)."""
    w = torch.zeros(n, n, dtype=torch.float32)
    if m is None or m >= n:
        return w + 1
    if m < 1:
        raise DataValidationError(f"reassemble_position: expected M >= 1, found M={m}")
    lo, hi = n // 2 - m // 2, n // 2 + m // 2
    w[lo:hi, lo:hi] = 1
    return w


def reassemble_position(
    obj_tensor: Any,
    global_offsets: Any,
    M: int | None = 10,
    *,
    canvas_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Average the central ``M x M`` pixels of every patch at its position: (H, W, 1) complex64.

    Positions are absolute object-pixel ``[x, y]`` centres. The canvas is ``canvas_shape``,
    else the one recorded on ``global_offsets`` by :func:`ptycho.loader.load` (the input
    object's shape), else one centred on the scan. Uncovered pixels are zero.
    """
    patches, c = _patch_stack(obj_tensor)
    n = patches.shape[-1]
    centres = _centres(global_offsets, patches.shape[0] // c, c)
    if canvas_shape is None:
        canvas_shape = getattr(global_offsets, "canvas_shape", None)
    if canvas_shape is None:
        canvas_shape = scan_canvas_shape(centres[:, 0], centres[:, 1], n)
    canvas, _ = stitch_patches(
        torch.from_numpy(patches),
        torch.from_numpy(centres),
        tuple(int(s) for s in canvas_shape),
        weights=_window(n, M),
    )
    return canvas.numpy().astype(np.complex64)[..., None]
