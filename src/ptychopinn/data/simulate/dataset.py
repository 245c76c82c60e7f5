"""The configuration of a simulated scan and its assembly into a :class:`PtychoData`."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from ptychopinn.config import MAX_SEED, check_choice, check_range, coerce_fields, option
from ptychopinn.data.simulate._common import (
    _shape2,
)
from ptychopinn.data.simulate.diffraction import extract_patches_exact, simulate_diffraction
from ptychopinn.data.simulate.objects import PATTERN_KINDS, _check_range, make_object
from ptychopinn.data.simulate.probes import PROBE_KINDS, make_probe
from ptychopinn.data.simulate.scans import SCAN_KINDS, make_scan
from ptychopinn.data.types import PtychoData
from ptychopinn.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)


MAX_OBJECT_PIXELS = 8192 * 8192


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


@dataclass
class SimulationConfig:
    """Parameters of a synthetic dataset (see :func:`simulate_dataset`).

    Defaults: a 256 x 256 object (GRF amplitude, "lines" phase, band-limited to half
    Nyquist), a defocused-lens probe of N=64, a raster scan of step 7 px (28 x 28 = 784
    positions, ~89 % linear overlap) with 0.5 px Gaussian jitter, 1e6 photons per pattern
    with Poisson noise. ``object_seed`` (default: derived from ``seed``) lets a test set share
    the probe and scan of a training set while getting a different object.
    """

    N: int = option(64, "diffraction pattern (and probe) size in pixels")
    object_size: int | tuple[int, int] = option(
        256, "object size in pixels (a square, or H W)", nargs="+"
    )
    object_amplitude: str = option(
        "grf", "amplitude pattern: lines, grf, constant, disks or an image"
    )
    object_phase: str = option("lines", "phase pattern (same kinds as object_amplitude)")
    amplitude_range: tuple[float, float] = option(
        (0.5, 1.0), "amplitude from LO to HI", nargs=2, metavar=("LO", "HI")
    )
    phase_range: tuple[float, float] = option(
        (-np.pi / 2, np.pi / 2), "phase from LO to HI (radians)", nargs=2, metavar=("LO", "HI")
    )
    band_limit: float | None = option(
        0.5, "object band limit as a fraction of Nyquist; none: not band-limited"
    )
    probe_kind: str = option("lens", "lens (defocused), zoneplate, disk or gaussian")
    probe_diameter: float | None = option(None, "probe (spot) diameter in px; none: N / 3")
    probe_defocus: float | None = option(
        None, "lens/zoneplate pupil-edge defocus phase (rad); none: from the diameter"
    )
    probe_curvature: float = option(0.0, "disk/gaussian quadratic phase at the edge (rad)")
    probe_aberration: float = option(
        2.0, "odd (coma-like) pupil phase in rad: real optics are not centrosymmetric"
    )
    scan_kind: str = option("raster", "raster, spiral or random positions")
    step: float | None = option(7.0, "scan step in px; none: n_points decides")
    n_points: int | None = option(None, "number of positions (spiral/random, or a raster cap)")
    jitter: float = option(0.5, "position jitter in px (Gaussian sigma)")
    margin: float = option(0.0, "px kept free between the scan and the object edge")
    nphotons: float | None = option(1e6, "mean photons per pattern; none: probe as given")
    poisson: bool = option(True, "draw Poisson counts (false: expected counts)")
    seed: int | None = option(0, "seed of probe jitter, scan and noise (and the object)")
    object_seed: int | None = option(
        None, "seed of the object alone (a different object, same probe and scan)"
    )

    def __post_init__(self) -> None:
        # Types (command-line strings included) by the configs' shared coercion; then ranges.
        coerce_fields(self)
        self.validate()

    @property
    def object_shape(self) -> tuple[int, int]:
        return _shape2(self.object_size, "object_size")

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""

        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(
                f"SimulationConfig.{name}: expected {expected}, found {getattr(self, name)!r}"
            )

        check_range(self, "N", ge=4)
        try:
            h, w = _shape2(self.object_size, "object_size")
        except ConfigError:
            raise bad("object_size", "a positive int or (height, width)") from None
        check_range(self, "margin", ge=0)
        if min(h, w) < self.N + 2 * self.margin:
            raise bad("object_size", f"at least N + 2*margin = {self.N + 2 * self.margin} px")
        if h * w > MAX_OBJECT_PIXELS:
            raise bad(
                "object_size",
                f"at most {MAX_OBJECT_PIXELS} pixels in all (e.g. 8192 x 8192; the object, its "
                "patches and patterns are held in memory)",
            )
        check_choice(self, "object_amplitude", PATTERN_KINDS)
        check_choice(self, "object_phase", PATTERN_KINDS)
        for name in ("amplitude_range", "phase_range"):
            try:
                lo, _ = _check_range(getattr(self, name), name)
            except ConfigError:
                raise bad(name, "a finite (low, high) pair with low <= high") from None
            if name == "amplitude_range" and lo < 0:
                raise bad(name, "non-negative amplitudes")
        check_range(self, "band_limit", gt=0.0, le=1.0)
        check_choice(self, "probe_kind", PROBE_KINDS)
        check_range(self, "probe_diameter", gt=0, le=self.N)
        check_choice(self, "scan_kind", SCAN_KINDS)
        check_range(self, "step", gt=0)
        check_range(self, "n_points", ge=1)
        check_range(self, "jitter", ge=0)
        # A pixel's Poisson draw fails beyond ~1e19 counts; 1e15 per pattern is far above
        # any measured dose (the panel reaches 1e9).
        check_range(self, "nphotons", gt=0, le=1e15)
        check_range(self, "seed", "object_seed", ge=0, le=MAX_SEED)


def _plain(value: Any) -> Any:
    """JSON-friendly copy of config values (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


#: Bytes held per pattern pixel while simulating: the exact patches and the exit waves
#: (complex64 each), counts and amplitudes (float32 each), and a margin for temporaries.
SIMULATION_BYTES_PER_PIXEL = 32


def _positions_at_most(cfg: SimulationConfig, object_shape: tuple[int, ...]) -> int:
    """An upper bound of the scan's positions, known before any is made (as
    :func:`make_scan` counts them): ``n_points`` (a random scan takes it whole), or a
    ``step`` grid (default ``N / 8``) over the range where patches fit, capped by
    ``n_points``."""
    if cfg.n_points and (cfg.scan_kind == "random" or cfg.step is None):
        return int(cfg.n_points)
    step = cfg.N / 8 if cfg.step is None else cfg.step
    h, w = (max(size - cfg.N + 1, 1) for size in object_shape[:2])
    grid = (h / step + 1) * (w / step + 1)
    return int(min(grid, cfg.n_points or grid))


def _check_memory(positions: int, N: int) -> None:
    """Refuse, before any allocation, a scan whose arrays would not fit in memory."""
    from ptychopinn import system_memory

    system_memory.refuse_over_half(
        SIMULATION_BYTES_PER_PIXEL * positions * N * N,
        system_memory.available_memory_bytes(),
        f"step / n_points: the scan would have up to {positions} positions of {N}x{N}, about",
        "use a larger step, fewer n_points or a smaller object_size",
    )


def simulate_dataset(
    cfg: SimulationConfig | None = None,
    *,
    obj: np.ndarray | None = None,
    probe: np.ndarray | None = None,
    **overrides: Any,
) -> PtychoData:
    """Simulate a full dataset (object, probe, scan, noisy diffraction, labels).

    Args:
        cfg: the configuration (default :class:`SimulationConfig()`); ``overrides`` replace
            its fields, e.g. ``simulate_dataset(seed=1, nphotons=1e4)``.
        obj: use this (H, W) complex object instead of generating one.
        probe: use this (N, N) probe instead of generating one; it is still rescaled to
            ``nphotons`` unless ``nphotons=None``. To reuse a probe exactly, pass
            ``probe=other.probe, nphotons=None``, or keep ``seed`` and change ``object_seed``.

    Returns:
        :class:`PtychoData` with amplitudes ``sqrt(counts)`` (float32), the scaled probe, the
        object and the exact patches as ``labels``; ``metadata`` records the configuration.
    """
    cfg = cfg or SimulationConfig()
    if overrides:
        known = {f.name for f in fields(SimulationConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"simulate_dataset: unknown SimulationConfig field(s) {unknown}; "
                f"expected some of {sorted(known)}"
            )
        cfg = replace(cfg, **overrides)
    seq_obj, seq_scan, seq_noise = np.random.SeedSequence(cfg.seed).spawn(3)
    n = cfg.N

    if obj is None:
        obj_seed = seq_obj if cfg.object_seed is None else cfg.object_seed
        obj = make_object(
            cfg.object_shape,
            amplitude=cfg.object_amplitude,
            phase=cfg.object_phase,
            amplitude_range=cfg.amplitude_range,
            phase_range=cfg.phase_range,
            band_limit=cfg.band_limit,
            seed=obj_seed,
        )
    else:
        obj = np.asarray(obj)
        if obj.ndim != 2 or min(obj.shape) < n:
            raise DataValidationError(
                f"obj: expected a 2-D array of at least {n} x {n}, found shape {obj.shape}"
            )
        obj = obj.astype(np.complex64)

    if probe is None:
        probe = make_probe(
            n,
            kind=cfg.probe_kind,
            diameter=cfg.probe_diameter,
            defocus=cfg.probe_defocus,
            curvature=cfg.probe_curvature,
            aberration=cfg.probe_aberration,
        )
    else:
        probe = np.asarray(probe)
        if probe.shape != (n, n):
            raise DataValidationError(
                f"probe: expected shape ({n}, {n}) to match N, found {probe.shape}"
            )

    _check_memory(_positions_at_most(cfg, obj.shape), n)
    x, y = make_scan(
        cfg.scan_kind,
        obj.shape,
        n,
        step=cfg.step,
        n_points=cfg.n_points,
        jitter=cfg.jitter,
        seed=seq_scan,
        margin=cfg.margin,
    )
    passband = 0.5 if cfg.band_limit is None else cfg.band_limit
    patches = extract_patches_exact(obj, x, y, n, passband=passband)
    counts, scaled = simulate_diffraction(
        obj,
        probe,
        x,
        y,
        nphotons=cfg.nphotons,
        poisson=cfg.poisson,
        seed=seq_noise,
        patches=patches,
    )
    scale = float(np.abs(scaled).max() / max(np.abs(probe).max(), 1e-30))
    logger.info(
        "simulated %d patterns of %dx%d on a %dx%d object (mean counts %.4g, probe scale %.4g)",
        x.size,
        n,
        n,
        obj.shape[0],
        obj.shape[1],
        float(counts.sum((1, 2)).mean()),
        scale,
    )
    metadata = {
        "simulated": True,
        "nphotons": cfg.nphotons,
        "seed": cfg.seed,
        "object_seed": cfg.object_seed,
        "probe_scale": scale,
        "extraction_passband": passband,
        "poisson": cfg.poisson,
        "simulation": {k: _plain(v) for k, v in asdict(cfg).items()},
    }
    return PtychoData(
        diffraction=np.sqrt(counts).astype(np.float32),
        xcoords=x,
        ycoords=y,
        probe=scaled.astype(np.complex64),
        object=obj,
        labels=patches,
        source="<simulated>",
        metadata=metadata,
    )
