"""Quality against wall time: the PINN, the PINN + refinement after k epochs, LSQML from flat.

Every point is its own run with that epoch count (``--refine object:k`` is what a user
would run; its step schedule depends on k), except fine-tuning, whose constant learning rate
makes a k-epoch run the prefix of a longer one, so its points are snapshots of one run.
Seconds of a refined point include the network's pass (the PINN's inference time), so the
curves compare what a user waits for from the diffraction data to the object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ptychopinn.data.types import PtychoData
from ptychopinn.refine import ObjectRefineSettings, RefineSpec, refine_reconstruction
from ptychopinn.refine.finetune import FinetuneSettings

DEFAULT_EPOCHS = (1, 2, 5, 10, 20, 50)
CURVES = ("object", "finetune", "lsqml_from_pinn", "lsqml")
#: Curves that are one refinement run per epoch count from the PINN's object: (curve, method).
_FROM_PINN = (("object", "object"), ("lsqml_from_pinn", "lsqml"))


@dataclass
class CurvePoint:
    """One (method, epochs) run: seconds and the quality metrics (None without truth)."""

    curve: str
    epochs: int
    seconds: float
    metrics: dict | None

    def row(self) -> dict:
        m = self.metrics or {}
        return {
            "curve": self.curve,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "amp_ssim": m.get("amp_ssim"),
            "phase_ssim": m.get("phase_ssim"),
        }


def time_to_quality(
    model,
    data: PtychoData,
    pinn_object: np.ndarray,
    pinn_seconds: float,
    score: Callable[[np.ndarray], dict | None],
    *,
    curves: Sequence[str] = ("object", "lsqml"),
    epochs: Sequence[int] = DEFAULT_EPOCHS,
    finetune_max_epochs: int = 5,
    device="cpu",
    object_settings: ObjectRefineSettings | None = None,
    lsqml_settings=None,
) -> list[CurvePoint]:
    """All points of the requested curves, the PINN alone first (epoch 0)."""
    points = [CurvePoint("pinn", 0, pinn_seconds, score(pinn_object))]
    starts_from_pinn = [(c, m) for c, m in _FROM_PINN if c in curves]
    for k in epochs:
        for curve, method in starts_from_pinn:
            refined = refine_reconstruction(
                model,
                data,
                pinn_object,
                RefineSpec(method, k),
                device=device,
                object_settings=object_settings,
                lsqml_settings=lsqml_settings,
            )
            points.append(
                CurvePoint(curve, k, pinn_seconds + refined.seconds, score(refined.object))
            )
        if "lsqml" in curves:
            points.append(_lsqml_flat(data, k, lsqml_settings, score))
    if "finetune" in curves:
        points.extend(
            _finetune_points(
                model, data, pinn_object, pinn_seconds, epochs, finetune_max_epochs, score, device
            )
        )
    return points


def _lsqml_flat(data: PtychoData, k: int, settings, score) -> CurvePoint:
    from ptychopinn.benchmarking.lsqml import LSQMLSettings, run_lsqml

    res = run_lsqml(data, replace(settings or LSQMLSettings(), epochs=k))
    return CurvePoint("lsqml", k, res.solve_s, score(res.object))


def _finetune_points(model, data, pinn_object, pinn_seconds, epochs, max_epochs, score, device):
    wanted = sorted(k for k in epochs if k <= max_epochs)
    if not wanted:
        return []
    points: list[CurvePoint] = []

    def on_epoch(epoch: int, get_object, seconds: float) -> None:
        if epoch in wanted:
            points.append(
                CurvePoint("finetune", epoch, pinn_seconds + seconds, score(get_object()))
            )

    refine_reconstruction(
        model,
        data,
        pinn_object,
        RefineSpec("finetune", wanted[-1]),
        device=device,
        finetune_settings=FinetuneSettings(),
        on_epoch=on_epoch,
    )
    return points


def format_curve(points: Sequence[CurvePoint]) -> str:
    """The points as an aligned table: curve, epochs, seconds, amplitude and phase SSIM."""
    head = f"{'curve':<16} {'epochs':>6} {'seconds':>8} {'amp_ssim':>8} {'phase_ssim':>10}"
    lines = [head, "-" * len(head)]
    for p in points:
        r = p.row()
        amp = "n/a" if r["amp_ssim"] is None else f"{r['amp_ssim']:.3f}"
        phase = "n/a" if r["phase_ssim"] is None else f"{r['phase_ssim']:.3f}"
        lines.append(f"{p.curve:<16} {p.epochs:>6} {p.seconds:>8.2f} {amp:>8} {phase:>10}")
    return "\n".join(lines)


def plot_curve(
    points: Sequence[CurvePoint], path: str | os.PathLike, title: str = ""
) -> Path | None:
    """PNG of amplitude and phase SSIM against seconds, one line per curve (None: no truth)."""
    if not any(p.metrics for p in points):
        return None
    from ptychopinn.plotting import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    pinn = [p for p in points if p.curve == "pinn"]
    for curve in dict.fromkeys(p.curve for p in points):
        sel = [p for p in points if p.curve == curve and p.metrics]
        if curve in ("object", "finetune", "lsqml_from_pinn"):
            sel = pinn + sel  # refinement curves start at the network's result
        if not sel:
            continue
        t = [p.seconds for p in sel]
        for ax, key in zip(axes, ("amp_ssim", "phase_ssim"), strict=True):
            values = [p.metrics[key] for p in sel]
            if curve == "pinn":
                ax.plot(t, values, "k*", markersize=14, label="PINN alone", zorder=5)
            else:
                ax.plot(t, values, "o-", label=curve)
    from matplotlib.ticker import FuncFormatter, LogLocator

    for ax, name in zip(axes, ("amplitude SSIM", "phase SSIM"), strict=True):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("seconds (log scale)")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))
