"""Pty-Chi LSQML on a PtychoPINN scan, run in a child process.

``run_lsqml`` writes the scan to an NPZ, starts ``python -m ptychopinn.benchmarking.lsqml``
and reads the reconstructed object back. The child converts the project's conventions to
Pty-Chi's:

* diffraction: our amplitudes (sqrt counts, zero frequency at ``N//2``) become intensities;
  Pty-Chi's ``fft_shift=True`` moves the zero frequency to the corner its forward model
  predicts (for even ``N`` fftshift and ifftshift coincide).
* FFT normalisation: ours is ``norm="ortho"``, Pty-Chi's far field is an unnormalised
  ``fft2``, so the probe is handed over divided by ``N`` (and multiplied back on return);
  the object then keeps our units.
* positions: Pty-Chi's patch at ``p + origin`` (``[y, x]``) covers ``p + origin - (N-1)/2 +
  [0..N-1]`` of its object buffer, our convention. It cuts the object at ``round(p) +
  origin`` and moves the sub-pixel rest onto the probe, which is exact only when ``origin``
  has the fractional part of ``(N-1)/2`` (a half pixel for even N). The buffer gets a
  ``margin`` on every side, so the origin is ``margin - h`` and the positions ``ours + h``
  with ``h = ((N-1)/2) mod 1``. (An integer origin with even N rounds ``x.5`` starts to
  even and misplaces half the patches by a pixel.)

Pty-Chi imports ``torchvision`` for one Gaussian blur (used only to smooth a random initial
object, which is never used here). PyPI's Linux torchvision wheels are CUDA builds whose
compiled operators need ``libtorch_cuda``; next to a CPU-only torch their import fails
("operator torchvision::nms does not exist"), and since Lightning and torchmetrics import
torchvision whenever it is installed, such a wheel breaks training too. Without a usable
torchvision the child provides that one symbol itself (a small pure-torch Gaussian blur,
installed in the child's ``sys.modules`` only) and says so in its log and result.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ptychopinn.atomic import atomic_savez
from ptychopinn.config import check_choice, check_range, coerce_fields
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ConfigError, PtychoPINNError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "with torch and torchvision from the PyTorch wheel index: pip install 'ptychopinn[ptychi]'; "
    "with a CPU-only torch and no matching torchvision: pip install --no-deps ptychi && "
    "pip install pandas pydantic scikit-learn tifffile (README: 'Comparing with Pty-Chi')"
)
NOISE_MODELS = ("gaussian", "poisson")
DEVICES = ("auto", "cpu", "cuda")


class LSQMLError(PtychoPINNError):
    """The Pty-Chi child process failed or produced no result."""


@dataclass
class LSQMLSettings:
    """What the LSQML reconstruction runs with.

    ``optimize_probe=False`` keeps the given probe fixed, as the PINN does, so both methods
    solve the same problem; ``True`` refines it (and rescales its intensity in the first
    epoch, Pty-Chi's default). ``threads`` caps torch's intra-op threads in the child.
    """

    epochs: int = 100
    batch_size: int = 100
    optimize_probe: bool = False
    noise_model: str = "gaussian"
    momentum: float = 0.0
    device: str = "auto"
    seed: int | None = 0
    margin: int = 2
    threads: int | None = None

    def __post_init__(self) -> None:
        coerce_fields(self)
        check_range(self, "epochs", ge=1)
        check_range(self, "batch_size", ge=1)
        check_range(self, "margin", ge=1)
        check_choice(self, "noise_model", NOISE_MODELS)
        check_choice(self, "device", DEVICES)
        check_range(self, "momentum", ge=0)
        check_range(self, "threads", ge=1)


@dataclass
class LSQMLResult:
    """The reconstructed object and how long the solver took.

    ``solve_s`` is what the solver itself took in the child (building the task, data on the
    device included, plus all epochs); ``wall_s`` adds the child's start and Pty-Chi's import.
    """

    object: np.ndarray  # (H, W) complex64 on the scan's canvas
    probe: np.ndarray  # (N, N) complex64 in the project's probe units
    solve_s: float
    run_s: float
    wall_s: float
    epochs: int
    final_loss: float | None
    device: str
    torchvision_shim: bool


def lsqml_unavailable_reason() -> str | None:
    """Why LSQML cannot run here (None when Pty-Chi is importable in principle)."""
    for module in ("ptychi", "pandas", "pydantic", "sklearn", "tifffile"):
        if importlib.util.find_spec(module) is None:
            return f"Pty-Chi is not installed ('{module}' not found): {INSTALL_HINT}"
    return None


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def run_lsqml(
    data: PtychoData,
    settings: LSQMLSettings | None = None,
    *,
    timeout: float | None = None,
    workdir: str | os.PathLike | None = None,
    initial_object: np.ndarray | None = None,
) -> LSQMLResult:
    """Reconstruct ``data`` with Pty-Chi LSQML in a child process and return the result.

    ``initial_object`` (the scan's canvas shape) replaces the flat start, e.g. the PINN's
    stitched object; ``data.probe`` must then be in the units that match it.
    """
    from ptychopinn.data.npz import save_npz

    settings = settings or LSQMLSettings()
    reason = lsqml_unavailable_reason()
    if reason:
        raise LSQMLError(reason)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="lsqml-") as tmp:
        tmp_path = Path(tmp)
        scan = save_npz(data, tmp_path / "scan.npz")
        out = tmp_path / "lsqml.npz"
        extra: list[str] = []
        if initial_object is not None:
            start_obj = np.asarray(initial_object, dtype=np.complex64)
            if start_obj.shape != data.canvas_shape():
                raise LSQMLError(
                    f"initial object: expected the scan's canvas {data.canvas_shape()}, "
                    f"found {start_obj.shape}"
                )
            extra = ["--initial", str(atomic_savez(tmp_path / "initial.npz", object=start_obj))]
        cmd = [
            sys.executable,
            "-m",
            "ptychopinn.benchmarking.lsqml",
            "--input",
            str(scan),
            "--output",
            str(out),
            "--settings",
            json.dumps(asdict(settings)),
            *extra,
        ]
        log.info("running Pty-Chi LSQML (%d epochs) in a child process", settings.epochs)
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LSQMLError(f"Pty-Chi LSQML did not finish within {timeout} s") from exc
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise LSQMLError(f"Pty-Chi LSQML failed (exit code {proc.returncode}):\n{tail}")
        with np.load(out) as res:
            loss = float(res["final_loss"])
            return LSQMLResult(
                object=res["object"],
                probe=res["probe"],
                solve_s=float(res["solve_s"]),
                run_s=float(res["run_s"]),
                wall_s=wall,
                epochs=int(res["epochs"]),
                final_loss=loss if math.isfinite(loss) else None,
                device=str(res["device"]),
                torchvision_shim=bool(res["torchvision_shim"]),
            )


# ---------------------------------------------------------------------------------------------
# Child side (imports Pty-Chi; never imported by the parent)
# ---------------------------------------------------------------------------------------------


def _gaussian_blur_module():
    """A stand-in ``torchvision.transforms`` holding only ``GaussianBlur`` (pure torch)."""
    import torch
    import torch.nn.functional as F

    class GaussianBlur:
        """Separable Gaussian blur with reflect padding, as torchvision's (fixed sigma)."""

        def __init__(self, kernel_size, sigma=(0.1, 2.0)) -> None:
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            sg = (sigma, sigma) if isinstance(sigma, int | float) else sigma
            self.kernel_size = (int(ks[0]), int(ks[1]))
            self.sigma = float(sum(sg) / len(sg))

        def _kernel(self, size: int, ref):
            x = torch.arange(size, dtype=ref.dtype, device=ref.device) - (size - 1) / 2
            k = torch.exp(-0.5 * (x / self.sigma) ** 2)
            return k / k.sum()

        def __call__(self, img):
            kh, kw = self.kernel_size
            shape = img.shape
            x = img.reshape(-1, 1, shape[-2], shape[-1])
            x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
            x = F.conv2d(x, self._kernel(kh, x).view(1, 1, kh, 1))
            x = F.conv2d(x, self._kernel(kw, x).view(1, 1, 1, kw))
            return x.reshape(shape)

    transforms = types.ModuleType("torchvision.transforms")
    transforms.GaussianBlur = GaussianBlur
    return transforms


def _ensure_torchvision() -> bool:
    """Import torchvision, or install the stand-in; True when the stand-in is used."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError) as exc:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        transforms = _gaussian_blur_module()
        package = types.ModuleType("torchvision")
        package.transforms = transforms
        package.__version__ = "0+ptychopinn-shim"
        sys.modules["torchvision"] = package
        sys.modules["torchvision.transforms"] = transforms
        log.warning(
            "torchvision cannot be imported with this torch (%s: %s); Pty-Chi's Gaussian blur "
            "uses a pure-torch stand-in",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return True
    return False


def _parity(n: int) -> float:
    """Fractional part of ``(n - 1) / 2``: 0.5 for even patch sizes, 0 for odd."""
    return ((n - 1) / 2) % 1


def _options(api, settings: LSQMLSettings, data: PtychoData, device_gpu: bool):
    """Pty-Chi LSQML options for ``data`` (arrays are passed to the task separately)."""
    opts = api.LSQMLOptions()
    opts.data_options.fft_shift = True
    opts.data_options.save_data_on_device = device_gpu
    m = settings.margin - _parity(data.N)
    obj = opts.object_options
    obj.optimizable = True
    obj.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    obj.position_origin_coords = np.array([m, m])
    # With a known probe there is no object/probe ambiguity to remove; removing it anyway
    # rescales the object to unit mean amplitude and shifts its phase.
    obj.remove_object_probe_ambiguity.enabled = settings.optimize_probe
    probe = opts.probe_options
    probe.optimizable = settings.optimize_probe
    rec = opts.reconstructor_options
    rec.num_epochs = settings.epochs
    rec.batch_size = min(settings.batch_size, data.n_positions)
    rec.noise_model = api.NoiseModels(settings.noise_model)
    rec.momentum_acceleration_gain = settings.momentum
    rec.rescale_probe_intensity_in_first_epoch = settings.optimize_probe
    rec.default_device = api.Devices.GPU if device_gpu else api.Devices.CPU
    rec.random_seed = settings.seed
    return opts


def _start_object(initial: np.ndarray | None, h: int, w: int, m: int) -> np.ndarray:
    """(1, H + 2m, W + 2m) starting object: flat ones, or ``initial`` edge-padded by ``m``."""
    if initial is None:
        return np.ones((1, h + 2 * m, w + 2 * m), dtype=np.complex64)
    return np.pad(np.asarray(initial, dtype=np.complex64), m, mode="edge")[None]


def solve(
    data: PtychoData, settings: LSQMLSettings, initial_object: np.ndarray | None = None
) -> dict:
    """Run LSQML in this process (the child); returns arrays and timings."""
    import torch

    shim = _ensure_torchvision()
    import ptychi.api as api
    from ptychi.api.task import PtychographyTask

    if settings.threads:
        torch.set_num_threads(settings.threads)
    gpu = settings.device != "cpu" and torch.cuda.is_available()
    if settings.device == "cuda" and not gpu:
        log.warning("LSQML: CUDA requested but not available, running on the CPU")
    n = data.N
    h, w = data.canvas_shape()
    m = settings.margin
    start = time.perf_counter()
    task = PtychographyTask(
        _options(api, settings, data, gpu),
        diffraction_data=np.square(data.diffraction, dtype=np.float32),
        object_data=_start_object(initial_object, h, w, m),
        probe_data=(np.asarray(data.probe, dtype=np.complex64) / n)[None, None],
        probe_position_x_px=(data.xcoords + _parity(n)).astype(np.float32),
        probe_position_y_px=(data.ycoords + _parity(n)).astype(np.float32),
    )
    built = time.perf_counter()
    task.run()
    if gpu:
        torch.cuda.synchronize()
    done = time.perf_counter()
    obj = task.get_data_to_cpu("object", as_numpy=True)[0, m : m + h, m : m + w]
    probe = task.get_data_to_cpu("probe", as_numpy=True)[0, 0] * n
    table = task.reconstructor.loss_tracker.table
    loss = float(table["loss"].iloc[-1]) if len(table) else float("nan")
    return {
        "object": obj.astype(np.complex64),
        "probe": probe.astype(np.complex64),
        "solve_s": done - start,
        "build_s": built - start,
        "run_s": done - built,
        "epochs": settings.epochs,
        "final_loss": loss,
        "device": "cuda" if gpu else "cpu",
        "torchvision_shim": shim,
    }


def _settings_from_json(text: str) -> LSQMLSettings:
    raw = json.loads(text)
    known = {f.name for f in fields(LSQMLSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"--settings: unknown LSQMLSettings field(s) {unknown}")
    return LSQMLSettings(**raw)


def _child_main(argv: list[str] | None = None) -> int:
    from ptychopinn.data.npz import load_npz

    p = argparse.ArgumentParser(description="Run Pty-Chi LSQML on an NPZ scan (child process).")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--settings", default="{}", help="LSQMLSettings as JSON")
    p.add_argument("--initial", default=None, help="NPZ with the starting 'object'")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = _settings_from_json(args.settings)
    data = load_npz(args.input)
    initial = None
    if args.initial:
        with np.load(args.initial) as start:
            initial = start["object"]
    result = solve(data, settings, initial)
    atomic_savez(args.output, **result)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
