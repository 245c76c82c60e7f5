"""The in-memory form of a ptychography dataset (the NPZ contract of docs/data.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


def evenly_spaced_index(m: int, max_count: int | None) -> np.ndarray:
    """At most ``max_count`` sorted, distinct indices spread evenly over ``range(m)`` (all
    of them when ``max_count`` is None): a sample of a scan that reads a memory map in order
    and never whole."""
    if max_count is None or m <= max_count:
        return np.arange(m)
    return np.unique(np.linspace(0, m - 1, max_count).round().astype(np.int64))


#: ``PtychoData.metadata`` key that is False when ``object`` is not a ground truth.
OBJECT_IS_TRUTH_KEY = "object_is_truth"


@dataclass
class PtychoData:
    """A validated ptychographic scan.

    Coordinates are object pixel coordinates: pixel centres at integers; a patch centred at
    ``c`` covers ``c - (N-1)/2 + [0..N-1]``.

    Attributes:
        diffraction: (M, N, N) float32 diffraction **amplitudes** (sqrt of photon counts),
            zero frequency at the array centre.
        xcoords, ycoords: (M,) float64 probe centres (column, row) in object pixels.
        probe: (N, N) complex64 illumination on the object pixel grid.
        object: optional (H, W) complex64 full object (ground truth in simulations); it
            defines the canvas size when present.
        scan_index: (M,) int64 scan identifiers (zeros by default).
        xcoords_start, ycoords_start: (M,) float64 nominal positions (default: the coords).
        labels: optional (M, N, N) complex64 ground-truth patches (``Y``, supervised mode).
        source: where the data came from (file path or ``"<memory>"``), used in messages.
    """

    diffraction: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    probe: np.ndarray
    object: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    xcoords_start: np.ndarray | None = None
    ycoords_start: np.ndarray | None = None
    labels: np.ndarray | None = None
    source: str = "<memory>"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = self.diffraction.shape[0]
        if self.scan_index is None:
            self.scan_index = np.zeros(m, dtype=np.int64)
        if self.xcoords_start is None:
            self.xcoords_start = np.asarray(self.xcoords, dtype=np.float64).copy()
        if self.ycoords_start is None:
            self.ycoords_start = np.asarray(self.ycoords, dtype=np.float64).copy()

    @property
    def object_is_truth(self) -> bool:
        """Whether ``object`` is a ground truth to score against and cut labels from.

        Readers of files whose object is a starting guess or an earlier reconstruction (a
        Ptychodus product) set ``metadata[OBJECT_IS_TRUTH_KEY] = False``; the object still
        defines the canvas.
        """
        return self.object is not None and self.metadata.get(OBJECT_IS_TRUTH_KEY) is not False

    @property
    def n_positions(self) -> int:
        """Number of scan positions M."""
        return int(self.diffraction.shape[0])

    @property
    def N(self) -> int:
        """Diffraction pattern (and object patch) size in pixels."""
        return int(self.diffraction.shape[-1])

    @property
    def coords(self) -> np.ndarray:
        """(M, 2) float64 array of ``[x, y]`` probe centres."""
        return np.stack([self.xcoords, self.ycoords], axis=1).astype(np.float64)

    @property
    def counts(self) -> np.ndarray:
        """Photon counts (squared amplitudes), float32."""
        return np.square(self.diffraction, dtype=np.float32)

    def canvas_shape(self, margin: int = 0) -> tuple[int, int]:
        """(H, W) of the object canvas: the object's shape, or the scan's extent plus a patch."""
        if self.object is not None:
            return tuple(int(s) for s in self.object.shape)  # type: ignore[return-value]
        n = self.N
        h = int(np.ceil(self.ycoords.max() + (n - 1) / 2)) + 1 + margin
        w = int(np.ceil(self.xcoords.max() + (n - 1) / 2)) + 1 + margin
        return h, w

    def subset(self, index: np.ndarray) -> PtychoData:
        """A copy restricted to the scan positions ``index`` (object and probe shared)."""
        index = np.asarray(index)
        return replace(
            self,
            diffraction=self.diffraction[index],
            xcoords=self.xcoords[index],
            ycoords=self.ycoords[index],
            scan_index=self.scan_index[index],
            xcoords_start=self.xcoords_start[index],
            ycoords_start=self.ycoords_start[index],
            labels=None if self.labels is None else self.labels[index],
        )


def require_scan(value: object, name: str) -> PtychoData:
    """``value`` if it is a loaded scan, else one message saying how to load one (a path
    given where the scan belongs is the usual slip)."""
    if not isinstance(value, PtychoData):
        from ptychopinn.errors import ConfigError

        raise ConfigError(
            f"{name}: expected a loaded scan (PtychoData: ptychopinn.data.ptychodus_files."
            f"load_scan(path) or ptychopinn.data.npz.load_npz(path)), found "
            f"{type(value).__name__} {str(value)[:60]!r}"
        )
    return value
