"""``ptycho_simulate``: write a simulated scan in the NPZ contract, with an overview picture."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from ptychopinn.atomic import check_writable
from ptychopinn.cli.common import configure_logging, run_cli
from ptychopinn.cli.config_flags import add_config_flags
from ptychopinn.config import ModelConfig, parse_bool
from ptychopinn.data.npz import save_npz
from ptychopinn.data.simulate import SimulationConfig, simulate_dataset
from ptychopinn.data.simulate.objects import SEEDED_PATTERNS
from ptychopinn.errors import ConfigError
from ptychopinn.progress import Progress

#: Most scans one ``--n_objects`` corpus may hold.
MAX_OBJECTS = 10_000

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="ptycho_simulate",
        description="Simulate a ptychographic scan (object, probe, positions, Poisson counts) "
        "and write it as an NPZ with objectGuess as ground truth.",
    )
    p.add_argument("--output", "-o", required=True, help="output .npz path")
    # Values stay strings ("none" included); SimulationConfig coerces and checks them.
    p.set_defaults(_field_names=add_config_flags(p, SimulationConfig))
    p.add_argument(
        "--as_counts",
        type=parse_bool,
        default=False,
        help="store raw photon counts in diff3d instead of amplitudes",
    )
    p.add_argument(
        "--picture", type=parse_bool, default=True, help="also write <output>.png with an overview"
    )
    p.add_argument(
        "--n_objects",
        type=int,
        default=1,
        help="write a corpus of this many scans of different objects, one probe and scan "
        "(files <output stem>_000.npz, ...; object k uses object_seed (default: seed) + k, "
        "which varies the drawn kinds lines, grf and disks, not images)",
    )
    p.add_argument("--verbose", action="store_true")
    return p


def corpus_paths(output: str, n_objects: int) -> list[Path]:
    """Where a corpus of ``n_objects`` scans goes: ``<stem>_000.npz`` ... (one: ``output``)."""
    out = Path(output)
    if n_objects == 1:
        return [out]
    width = max(3, len(str(n_objects - 1)))
    return [
        out.with_name(f"{out.stem}_{k:0{width}d}{out.suffix or '.npz'}") for k in range(n_objects)
    ]


def check_corpus_objects_differ(cfg: SimulationConfig, n_objects: int) -> None:
    """A corpus varies its objects by the object seed, which images and ``constant`` ignore:
    refuse a corpus of identical objects; warn when only one of amplitude / phase varies."""
    fixed = {
        name: kind
        for name in ("object_amplitude", "object_phase")
        if (kind := getattr(cfg, name)) not in SEEDED_PATTERNS
    }
    if len(fixed) == 2:
        raise ConfigError(
            f"--n_objects {n_objects}: object_amplitude {cfg.object_amplitude!r} and "
            f"object_phase {cfg.object_phase!r} do not depend on the object seed, so every scan "
            f"would hold the same object; give one of them a drawn kind "
            f"({', '.join(SEEDED_PATTERNS)}), or simulate each image as its own scan"
        )
    for name, kind in fixed.items():
        log.warning(
            "--n_objects %d: %s %r is the same in every scan (only %s drawn kinds vary)",
            n_objects,
            name,
            kind,
            ", ".join(SEEDED_PATTERNS),
        )


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    given = {n: getattr(args, n) for n in args._field_names if getattr(args, n) is not None}
    overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()}
    if isinstance(overrides.get("object_size"), tuple) and len(overrides["object_size"]) == 1:
        overrides["object_size"] = overrides["object_size"][0]
    if not 1 <= args.n_objects <= MAX_OBJECTS:
        raise ConfigError(f"--n_objects: expected 1 to {MAX_OBJECTS}, found {args.n_objects}")
    try:
        cfg = SimulationConfig(**overrides)
    except TypeError as exc:  # a field this SimulationConfig does not have
        raise ConfigError(str(exc)) from exc
    if cfg.N not in ModelConfig.ALLOWED_N:
        log.warning(
            "N: %dx%d patterns are simulated, but the network trains on N of %s only",
            cfg.N,
            cfg.N,
            ", ".join(map(str, ModelConfig.ALLOWED_N)),
        )
    if args.n_objects > 1:
        check_corpus_objects_differ(cfg, args.n_objects)
    paths = corpus_paths(args.output, args.n_objects)
    for path in paths:  # before any simulating: a directory or an unwritable place
        check_writable(path)
    base_seed = cfg.object_seed if cfg.object_seed is not None else cfg.seed
    corpus = Progress(
        list(enumerate(paths)), desc="simulating", unit="scan", enabled=len(paths) > 1
    )
    for k, path in corpus:
        if args.n_objects > 1:
            cfg = dataclasses.replace(cfg, object_seed=base_seed + k)
        data = simulate_dataset(cfg)
        out = save_npz(data, path, as_counts=args.as_counts)
        summary = {
            "output": str(out),
            "positions": data.n_positions,
            "N": data.N,
            "object_shape": list(data.canvas_shape()),
        }
        if args.n_objects > 1:
            summary["object_seed"] = cfg.object_seed
        if args.picture:
            from ptychopinn.plotting import save_dataset_overview

            summary["picture"] = str(save_dataset_overview(data, Path(out).with_suffix(".png")))
        print(json.dumps(summary), flush=True)
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
