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


def check_picture_path(path: str | os.PathLike) -> None:
    """Refuse, before any work, a picture path whose extension matplotlib cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase

    from ptychopinn.errors import ConfigError

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        found = f".{suffix}" if suffix else "no extension"
        raise ConfigError(
            f"{path}: expected a picture file ending in one of "
            f"{', '.join('.' + f for f in sorted(formats))}, found {found}"
        )


def _save(fig, path: Path) -> Path:
    """Write a figure atomically (temporary name, then rename)."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    finally:
        _pyplot().close(fig)


#: Grey of the region no probe position illuminated (it carries no information).
UNSCANNED_GREY = "0.82"


def robust_range(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """The 1st-99th percentile of the finite (and masked-in) values: a few hot or dead edge
    pixels must not wash out the colour scale of the whole object."""
    values = image[np.isfinite(image) & (True if mask is None else mask)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [1.0, 99.0]))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def _masked(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return image if mask is None else np.where(mask, image, np.nan)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=UNSCANNED_GREY)


def _nice_length(width_px: int) -> int:
    """About a fifth of the width, rounded to 1, 2 or 5 times a power of ten."""
    target = max(width_px / 5, 1)
    power = 10 ** int(np.floor(np.log10(target)))
    return int(max(m * power for m in (1, 2, 5) if m * power <= target))


def add_scale_bar(ax, width_px: int) -> None:
    """A bar of a round number of object pixels in the lower-left corner."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = _nice_length(width_px)
    bar = AnchoredSizeBar(
        ax.transData,
        length,
        f"{length} px",
        "lower left",
        pad=0.4,
        color="white",
        frameon=True,
        size_vertical=max(width_px / 150, 1),
        label_top=True,
    )
    bar.patch.set_facecolor("black")
    bar.patch.set_alpha(0.45)
    ax.add_artist(bar)


def _show(ax, fig, image, *, cmap: str, vmin: float, vmax: float, title: str) -> None:
    im = ax.imshow(image, cmap=_cmap(cmap), vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    add_scale_bar(ax, image.shape[1])
    fig.colorbar(im, ax=ax, fraction=0.046)


def save_image(
    image: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str,
    cmap: str,
    mask: np.ndarray | None = None,
    vrange: tuple[float, float] | None = None,
) -> Path:
    """One real-valued image with a colour bar and a scale bar; outside ``mask`` grey."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    lo, hi = vrange or robust_range(image, mask)
    _show(ax, fig, _masked(image, mask), cmap=cmap, vmin=lo, vmax=hi, title=title)
    return _save(fig, path)


def save_object_pictures(
    obj: np.ndarray,
    output_dir: str | os.PathLike,
    *,
    stem: str = "reconstructed",
    mask: np.ndarray | None = None,
) -> list[Path]:
    """``<stem>_amplitude.png`` and ``<stem>_phase.png`` of a complex object.

    ``mask`` (the scanned region) greys out what no position illuminated. The phase is
    shown on the full cyclic range, since a reconstruction's phase offset is arbitrary.
    """
    out = Path(output_dir)
    label = stem.replace("_", " ").capitalize()
    return [
        save_image(
            np.abs(obj),
            out / f"{stem}_amplitude.png",
            title=f"{label} amplitude",
            cmap="gray",
            mask=mask,
        ),
        save_image(
            np.angle(obj),
            out / f"{stem}_phase.png",
            title=f"{label} phase (rad)",
            cmap="twilight",
            mask=mask,
            vrange=(-np.pi, np.pi),
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
    """Truth / reconstruction / error for amplitude and phase (reconstruction already aligned).

    Cropped to the scanned region's box, with unscanned pixels grey; truth and
    reconstruction share one colour range (the truth's) and each error map is symmetric
    about zero, so colours compare across panels.
    """
    plt = _pyplot()
    if mask is not None and mask.any():
        rows, cols = np.nonzero(mask)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        reconstruction, truth, mask = reconstruction[box], truth[box], mask[box]
    else:
        mask = None
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    amp_t, amp_r = np.abs(truth), np.abs(reconstruction)
    ph_t = np.angle(truth)
    ph_err = np.angle(reconstruction * np.conj(truth))  # wrapped: no 2 pi jumps in the error
    rows_data = [
        ("amplitude", amp_t, amp_r, amp_r - amp_t, "gray"),
        ("phase", ph_t, ph_t + ph_err, ph_err, "twilight"),
    ]
    for row, (name, t, r, err, cmap) in enumerate(rows_data):
        lo, hi = robust_range(t, mask)
        for col, (img, label) in enumerate([(t, "truth"), (r, "reconstruction")]):
            _show(
                axes[row, col],
                fig,
                _masked(img, mask),
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                title=f"{name}: {label}",
            )
        limit = max(abs(v) for v in robust_range(err, mask)) or 1.0
        _show(
            axes[row, 2],
            fig,
            _masked(err, mask),
            cmap="coolwarm",
            vmin=-limit,
            vmax=limit,
            title=f"{name}: error",
        )
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


def _plot_learning_rate(ax, table, lr_key: str) -> None:
    """The learning rate (logged by step, at each epoch's start) on a second axis, placed on
    the epoch axis through the steps at which the epochs ended."""
    step, epoch = np.atleast_1d(table["step"]), np.atleast_1d(table["epoch"])
    lr = np.atleast_1d(table[lr_key])
    ends = ~np.isnan(epoch) & ~np.isnan(step)
    keep = ~np.isnan(lr) & ~np.isnan(step)
    if not keep.any() or not ends.any():
        return
    end_steps, order = np.unique(step[ends], return_index=True)
    end_epochs = epoch[ends][order] + 1
    # epoch k (1-based) runs from the end step of epoch k-1 (0 at the start) to its own
    x = np.interp(step[keep], np.r_[0.0, end_steps], np.r_[0.0, end_epochs]) + 1
    twin = ax.twinx()
    twin.plot(x, lr[keep], color="0.5", lw=1, ls="--", drawstyle="steps-post")
    twin.set_ylabel("learning rate at epoch start (dashed)", color="0.4")
    twin.set_ylim(bottom=0)


def save_loss_curve(metrics_csv: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """Per-epoch training (and validation) loss from a Lightning CSV log; None if absent."""
    metrics_csv = Path(metrics_csv)
    if not metrics_csv.exists():
        return None
    table = np.genfromtxt(metrics_csv, delimiter=",", names=True)
    names = table.dtype.names or ()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    final = []
    for key, label in (("train_loss_epoch", "training"), ("val_loss", "validation")):
        if key in names:
            values = np.atleast_1d(table[key])
            epochs = np.atleast_1d(table["epoch"]) + 1
            keep = ~np.isnan(values)
            if not keep.any():
                continue
            line = ax.plot(epochs[keep], values[keep], marker="o", ms=3, label=label)[0]
            best = int(np.nanargmin(np.where(keep, values, np.nan)))
            ax.plot(epochs[best], values[best], "*", ms=11, color=line.get_color())
            final.append(f"{label} {values[keep][-1]:.4g} (best {values[best]:.4g})")
    lr_key = next((n for n in names if n.startswith("lr")), None)
    if lr_key is not None and "step" in names:
        _plot_learning_rate(ax, table, lr_key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("final: " + ", ".join(final) if final else "no loss logged", fontsize=9)
    ax.legend(title="* best epoch", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)
