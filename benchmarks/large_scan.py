"""Inference and stitching of a large scan (default 100,000 patterns of 64x64) in bounded memory.

The scan is simulated chunk by chunk straight into a float32 file on disk (1.6 GB for 100k
patterns; the benchmark never holds it in memory), then reconstructed by
:func:`ptychopinn.workflows.infer.reconstruct`, which gathers one batch of patterns at a time
and streams the predicted patches into the canvas. A sampling thread records the process's
peak resident memory from ``/proc/self/status``, split into anonymous memory (what the
process allocated) and file-backed pages (the input file mapped in, reclaimable page cache).

``--network pinn`` runs the real generator (about 2 GFLOP per pattern at
``n_filters_scale=2``: 100k patterns take most of an hour on 2 CPU cores); ``--network stub``
swaps in a near-free stand-in so the run measures the data path and stitching alone, at full
scale, in a few minutes. ``--reader pread`` reads rows with ``os.pread`` instead of a memory
map, so not even page cache is mapped into the process.

    python benchmarks/large_scan.py                              # 100k, stub network, memmap
    python benchmarks/large_scan.py --network pinn --positions 20000 --n_filters_scale 1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptychopinn.benchmarking.runtime import quiet_benchmark_process
from ptychopinn.config import ModelConfig
from ptychopinn.data.simulate import far_field_intensity, make_object, make_probe
from ptychopinn.data.types import PtychoData
from ptychopinn.model.pinn import PtychoPINN
from ptychopinn.workflows.infer import reconstruct

log = logging.getLogger("large_scan")


# ----------------------------------------------------------------------------- data


def raster_positions(m: int, n: int, step: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """``m`` raster centres on half-integers (patch starts on integers) and the canvas shape."""
    side = math.ceil(math.sqrt(m))
    k = np.arange(m)
    row, col = k // side, k % side
    centre = (n - 1) / 2
    x = centre + step * col.astype(np.float64)
    y = centre + step * row.astype(np.float64)
    rows = math.ceil(m / side)
    return x, y, ((rows - 1) * step + n, (side - 1) * step + n)


def simulate_to_file(
    path: Path, m: int, n: int, step: int, nphotons: float, seed: int, chunk: int = 2048
):
    """Write ``m`` Poisson-noisy amplitudes (float32, C order) to ``path``; return the scan."""
    rng = np.random.default_rng(seed)
    x, y, shape = raster_positions(m, n, step)
    obj = make_object(shape, seed=seed)
    probe = make_probe(n, aberration=2.0).astype(np.complex64)
    # Photon scale from the first chunk (Parseval: total counts = sum |P O|^2).
    x0 = (x - (n - 1) / 2).astype(np.int64)
    y0 = (y - (n - 1) / 2).astype(np.int64)
    scale = None
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(m, n, n))
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        patches = np.stack(
            [obj[r : r + n, c : c + n] for r, c in zip(y0[start:stop], x0[start:stop], strict=True)]
        )
        if scale is None:
            energy = float(np.mean(np.sum(np.abs(probe * patches) ** 2, axis=(1, 2))))
            scale = math.sqrt(nphotons / energy)
        counts = far_field_intensity((scale * probe) * patches)
        out[start:stop] = np.sqrt(rng.poisson(counts)).astype(np.float32)
    out.flush()
    del out
    return x, y, (scale * probe).astype(np.complex64), obj


class FileRows:
    """Read-only (M, N, N) float32 rows of an ``.npy`` file via ``os.pread`` (no mapping)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            if fortran or dtype != np.float32 or len(shape) != 3:
                raise ValueError(f"{path}: expected a C-order float32 (M, N, N) array")
            self.offset = fh.tell()
        self.shape = tuple(shape)
        self.dtype = np.dtype(np.float32)
        self.row_bytes = int(np.prod(self.shape[1:])) * 4
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        out = np.empty((idx.size, *self.shape[1:]), dtype=np.float32)
        # Runs of consecutive rows are read in one call.
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        for run in np.split(np.arange(idx.size), breaks):
            first, count = int(idx[run[0]]), run.size
            buf = os.pread(self.fd, count * self.row_bytes, self.offset + first * self.row_bytes)
            out[run[0] : run[0] + count] = np.frombuffer(buf, np.float32).reshape(
                count, *self.shape[1:]
            )
        return out


# ----------------------------------------------------------------------------- memory


def _status_kib() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


class MemorySampler(threading.Thread):
    """Polls ``/proc/self/status`` and keeps the peaks (KiB)."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> None:
        now = _status_kib()
        for key in self.peaks:
            self.peaks[key] = max(self.peaks[key], now.get(key, 0))

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join()
        self.sample()
        return self.peaks


# ----------------------------------------------------------------------------- model


class StubGenerator(nn.Module):
    """Near-free stand-in for the CNN: amplitude and phase from a 3x3 blur of the input."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = F.avg_pool2d(x, 3, stride=1, padding=1)
        return torch.sigmoid(s), math.pi * torch.tanh(s - s.mean())


def build_model(args, probe: np.ndarray) -> PtychoPINN:
    torch.manual_seed(0)
    cfg = ModelConfig(N=64, gridsize=args.gridsize, n_filters_scale=args.n_filters_scale)
    model = PtychoPINN(cfg, probe, 1.0).eval()
    if args.network == "stub":
        model.generator = StubGenerator()
    return model


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--positions", type=int, default=100_000)
    p.add_argument("--step", type=int, default=7)
    p.add_argument("--nphotons", type=float, default=1e6)
    p.add_argument("--gridsize", type=int, default=1)
    p.add_argument("--n_filters_scale", type=int, default=2)
    p.add_argument("--network", choices=("stub", "pinn"), default="stub")
    p.add_argument("--reader", choices=("memmap", "pread"), default="memmap")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workdir", default=None, help="where the scan file goes (default: temp)")
    p.add_argument("--tracemalloc", action="store_true", help="also trace numpy/Python peaks")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    quiet_benchmark_process(args.threads)
    n = 64
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="large-scan-") as tmp:
        path = Path(tmp) / "diffraction.npy"
        start = time.perf_counter()
        x, y, probe, obj = simulate_to_file(path, args.positions, n, args.step, args.nphotons, 0)
        sim_s = time.perf_counter() - start
        size_gb = path.stat().st_size / 1e9
        log.info(
            "simulated %d patterns (%.2f GB on disk) in %.0f s", args.positions, size_gb, sim_s
        )
        canvas = obj.shape
        del obj
        rows = np.load(path, mmap_mode="r") if args.reader == "memmap" else FileRows(path)
        data = PtychoData(diffraction=rows, xcoords=x, ycoords=y, probe=probe, source=str(path))
        model = build_model(args, probe)
        baseline = _status_kib()
        if args.tracemalloc:
            tracemalloc.start()
        sampler = MemorySampler()
        sampler.start()
        last = [time.perf_counter(), 0]

        def on_batch(done: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 30:
                rate = (done - last[1]) / (now - last[0])
                log.info("%d / %d patterns (%.0f patterns/s)", done, args.positions, rate)
                last[:] = [now, done]

        start = time.perf_counter()
        rec = reconstruct(
            model, data, batch_size=args.batch_size, canvas_shape=canvas, on_batch=on_batch
        )
        seconds = time.perf_counter() - start
        peaks = sampler.stop()
        traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
        tracemalloc.stop()
    mib = 1 / 1024
    result = {
        "positions": args.positions,
        "canvas": list(rec.object.shape),
        "network": args.network,
        "n_filters_scale": args.n_filters_scale,
        "gridsize": args.gridsize,
        "reader": args.reader,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "input_gb": round(size_gb, 2),
        "all_patches_complex64_gb": round(args.positions * n * n * 8 / 1e9, 2),
        "seconds": round(seconds, 1),
        "patterns_per_s": round(args.positions / seconds, 1),
        "rss_before_mib": round(baseline["VmRSS"] * mib),
        "peak_rss_mib": round(peaks["VmRSS"] * mib),
        "peak_anon_mib": round(peaks["RssAnon"] * mib),
        "anon_before_mib": round(baseline["RssAnon"] * mib),
        "file_mapped_before_mib": round(baseline["RssFile"] * mib),
        "peak_file_mapped_mib": round(peaks["RssFile"] * mib),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * mib),
        "tracemalloc_peak_mib": None if traced is None else round(traced / 2**20),
        "lit_fraction": round(float((rec.weights > 0).mean()), 3),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
