"""Pictures of datasets and reconstructions (matplotlib, headless Agg backend)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptychopinn.atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write a figure atomically (temporary name, then rename)."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    finally:
        _pyplot().close(fig)


def save_image(image: np.ndarray, path: str | os.PathLike, *, title: str, cmap: str) -> Path:
    """One real-valued image with a colour bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    im = ax.imshow(image, cmap=cmap)
    ax.set_title(title)
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def save_object_pictures(
    obj: np.ndarray, output_dir: str | os.PathLike, *, stem: str = "reconstructed"
) -> list[Path]:
    """``<stem>_amplitude.png`` and ``<stem>_phase.png`` of a complex object."""
    out = Path(output_dir)
    label = stem.replace("_", " ").capitalize()
    return [
        save_image(
            np.abs(obj), out / f"{stem}_amplitude.png", title=f"{label} amplitude", cmap="gray"
        ),
        save_image(
            np.angle(obj), out / f"{stem}_phase.png", title=f"{label} phase (rad)", cmap="twilight"
        ),
    ]


def save_comparison(
    reconstruction: np.ndarray,
    truth: np.ndarray,
    path: str | os.PathLike,
    *,
    mask: np.ndarray | None = None,
    metrics: dict | None = None,
) -> Path:
    """Truth / reconstruction / error for amplitude and phase (reconstruction already aligned)."""
    plt = _pyplot()
    if mask is not None and mask.any():
        rows, cols = np.nonzero(mask)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        reconstruction, truth = reconstruction[box], truth[box]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    amp_t, amp_r = np.abs(truth), np.abs(reconstruction)
    ph_t = np.angle(truth)
    ph_r = ph_t + np.angle(reconstruction * np.conj(truth))
    rows_data = [("amplitude", amp_t, amp_r, "gray"), ("phase", ph_t, ph_r, "twilight")]
    for row, (name, t, r, cmap) in enumerate(rows_data):
        lo, hi = float(t.min()), float(t.max())
        for col, (img, label) in enumerate([(t, "truth"), (r, "reconstruction")]):
            im = axes[row, col].imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            axes[row, col].set_title(f"{name}: {label}")
            fig.colorbar(im, ax=axes[row, col], fraction=0.046)
        im = axes[row, 2].imshow(r - t, cmap="coolwarm")
        axes[row, 2].set_title(f"{name}: error")
        fig.colorbar(im, ax=axes[row, 2], fraction=0.046)
    for ax in axes.flat:
        ax.set_axis_off()
    if metrics:
        keys = ("amp_ssim", "phase_ssim", "amp_psnr", "phase_psnr", "frc50")
        fig.suptitle("   ".join(f"{k}={metrics[k]:.3f}" for k in keys if k in metrics))
    return _save(fig, path)


def save_dataset_overview(data, path: str | os.PathLike) -> Path:
    """Object (if known), probe, scan positions and one diffraction pattern of a dataset."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    if data.object is not None:
        axes[0].imshow(np.abs(data.object), cmap="gray")
        axes[0].set_title("object amplitude")
        axes[1].imshow(np.angle(data.object), cmap="twilight")
        axes[1].set_title("object phase + scan positions")
        axes[1].plot(data.xcoords, data.ycoords, ".", ms=2, color="orange")
    else:
        axes[1].plot(data.xcoords, data.ycoords, ".", ms=2)
        axes[1].invert_yaxis()
        axes[1].set_title("scan positions")
    axes[2].imshow(np.abs(data.probe), cmap="magma")
    axes[2].set_title("probe amplitude")
    axes[3].imshow(np.log10(1 + data.counts[data.n_positions // 2]), cmap="viridis")
    axes[3].set_title("log10(1 + counts), middle pattern")
    for ax in axes:
        ax.set_axis_off()
    return _save(fig, path)


def save_loss_curve(metrics_csv: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """Per-epoch training (and validation) loss from a Lightning CSV log; None if absent."""
    metrics_csv = Path(metrics_csv)
    if not metrics_csv.exists():
        return None
    table = np.genfromtxt(metrics_csv, delimiter=",", names=True)
    names = table.dtype.names or ()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss_epoch", "val_loss"):
        if key in names:
            values = table[key]
            keep = ~np.isnan(values)
            ax.plot(table["epoch"][keep] + 1, values[keep], marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
