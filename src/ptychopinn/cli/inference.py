"""``ptycho_inference``: reconstruct a scan with a trained model archive."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ptychopinn.cli.common import configure_logging, print_summary, rounded, run_cli
from ptychopinn.cli.config_flags import (
    add_bool_flag,
    add_config_flags,
    add_execution_flags,
    collect,
    execution_overrides,
    prefixed,
)
from ptychopinn.config import InferenceConfig, load_execution_config, load_inference_config
from ptychopinn.errors import ConfigError

#: Execution settings that apply to a reconstruction.
EXECUTION_FIELDS = ("accelerator", "num_workers", "inference_batch_size")


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from :class:`InferenceConfig` (``--test_data`` and ``--n_images``
    are the older spellings of ``--test_data_file`` and ``--n_groups``), execution flags
    and the refinement flags."""
    p = argparse.ArgumentParser(
        prog="ptycho_inference",
        allow_abbrev=False,
        description="Reconstruct a scan with a trained model. Precedence: command line > "
        "--config YAML (its inference: and execution: sections, or flat keys) > defaults.",
    )
    p.add_argument("--config", default=None, help="YAML config")
    add_bool_flag(p, "comparison_plot", True, "write the comparison picture")
    p.add_argument("--verbose", action="store_true")
    names = add_config_flags(p, InferenceConfig)
    add_execution_flags(p, only=EXECUTION_FIELDS)
    p.set_defaults(_inference_names=names, _refine_names=add_refine_flags(p))
    return p


#: Prefix of the object-refinement flags (``--refine_step``, ``--refine_momentum``, ...).
REFINE_PREFIX = "refine_"


def add_refine_flags(p: argparse.ArgumentParser) -> list[str]:
    """``--refine METHOD[:EPOCHS]`` and one ``--refine_<field>`` flag per field of
    :class:`~ptychopinn.refine.object.ObjectRefineSettings` (the epochs come from
    ``--refine``)."""
    from ptychopinn.refine.object import ObjectRefineSettings

    p.add_argument(
        "--refine",
        default="auto",
        metavar="METHOD[:EPOCHS]",
        help="object:K (direct refinement of the stitched object, the fastest to quality), "
        "finetune:K (K epochs of network training on this scan), lsqml:K (Pty-Chi LSQML "
        "from the PINN object; needs the ptychi extra); writes reconstruction_refined.npz, "
        "refined_*.png and metrics_refined.json next to the network's result. auto (the "
        "default): object:50 only when the scan has another probe than the model's, the "
        "network's result leaves more than 1.5 %% of the measured signal unexplained, or the "
        "probe equals its own twin; none: never",
    )
    return add_config_flags(
        p,
        ObjectRefineSettings,
        skip=("epochs",),
        prefix=REFINE_PREFIX,
        title="settings of --refine object:K",
    )


def refine_settings(args: argparse.Namespace):
    """The object-refinement settings of the command line (checked, one message if bad) and
    the ``--refine_*`` flags given for them."""
    from ptychopinn.refine.object import ObjectRefineSettings

    given = collect(args, args._refine_names, cls=ObjectRefineSettings, prefix=REFINE_PREFIX)
    return ObjectRefineSettings(**given), [f"--{prefixed(REFINE_PREFIX, n)}" for n in given]


def inference_config(args: argparse.Namespace) -> InferenceConfig:
    """The checked :class:`InferenceConfig` of the command line (and ``--config``)."""
    config = load_inference_config(args.config, collect(args, args._inference_names))
    for name in ("model_path", "test_data_file"):
        if not getattr(config, name):
            raise ConfigError(f"{name}: required (--{name} PATH, or the YAML), found none")
    return config


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    config = inference_config(args)
    configure_logging(args.verbose or config.debug)
    from ptychopinn.bundle import load_for_backend
    from ptychopinn.data.ptychodus_files import load_scan
    from ptychopinn.refine import parse_refine_spec
    from ptychopinn.workflows.execution import resolve_device
    from ptychopinn.workflows.lock import output_dir_lock
    from ptychopinn.workflows.train import subsample

    spec = parse_refine_spec(args.refine)
    if spec is not None and spec.method == "lsqml":
        from ptychopinn.benchmarking import lsqml_unavailable_reason

        reason = lsqml_unavailable_reason()
        if reason:  # before any reconstructing: nothing half done
            raise ConfigError(f"--refine {args.refine}: {reason}")
    object_settings, ignored = refine_settings(args)
    if ignored and (spec is None or spec.method != "object"):
        logging.getLogger(__name__).warning(
            "%s: ignored; these settings apply to --refine object:K, found --refine %s",
            ", ".join(ignored),
            args.refine or "none",
        )
    execution = load_execution_config(args.config, execution_overrides(args))
    device = resolve_device(execution.accelerator)
    loaded = load_for_backend(config.model_path, config.backend, device=device)
    data = load_scan(config.test_data_file)
    if config.n_groups is not None:
        data = data.subset(np.arange(min(config.n_groups, data.n_positions)))
    data = subsample(data, config.n_subsample, config.subsample_seed)
    with output_dir_lock(config.output_dir):
        return _reconstruct_and_write(
            args, config, loaded, data, device, execution, spec, object_settings
        )


def _reconstruct_and_write(
    args, config: InferenceConfig, loaded, data, device, execution, spec, object_settings
) -> int:
    from ptychopinn.refine import refine_reconstruction
    from ptychopinn.refine.data_fit import report_data_fit
    from ptychopinn.refine.scan_probe import refinement_probe
    from ptychopinn.workflows.infer import reconstruct
    from ptychopinn.workflows.outputs import remove_outputs, write_outputs

    log = logging.getLogger(__name__)
    output_dir = config.output_dir
    start = time.perf_counter()
    rec = reconstruct(
        loaded.model,
        data,
        device=device,
        batch_size=execution.inference_batch_size,
        progress=True,
        adapt_batch_norm=config.adapt_batch_norm,
    )
    seconds = time.perf_counter() - start
    metrics = write_outputs(rec, data, output_dir, comparison_plot=args.comparison_plot)
    product = _write_product(rec, data, output_dir)
    summary = {
        "output_dir": output_dir,
        "positions": data.n_positions,
        "seconds": round(seconds, 3),
        "patterns_per_s": round(data.n_positions / seconds, 1),
        "backend": loaded.backend,
    }
    if product:
        summary["ptychodus_product"] = str(product)
    torch_model = _pytorch_twin(loaded, device)
    probe, overlap = refinement_probe(torch_model, data, log)
    automatic = spec is not None and spec.automatic
    unexplained = report_data_fit(
        probe,
        data,
        rec.object,
        "the network's",
        "refine it: --refine object:50"
        if spec is None
        else f"refining it ({spec.method}:{spec.epochs}{', --refine auto' if automatic else ''})",
        log,
    )
    summary["probe_overlap"] = round(overlap, 4)
    summary["unexplained_signal"] = round(unexplained, 5)
    reason = None
    if automatic:
        # From the unrounded figures, so the decision agrees with what was logged.
        reason = _reason_to_refine(probe, overlap, unexplained, spec, data.source, log)
        if reason is None:
            spec = None
    if spec is None:  # a refined result of an earlier run would pass for this scan's
        remove_outputs(output_dir, suffix="_refined")
        (Path(output_dir) / product_name("_refined")).unlink(missing_ok=True)
    else:
        refined = refine_reconstruction(
            torch_model,
            data,
            rec.object,
            spec,
            device=device,
            object_settings=object_settings,
            progress=True,
            probe=probe,
        )
        refined_rec = replace(rec, object=refined.object)
        refined_metrics = write_outputs(
            refined_rec,
            data,
            output_dir,
            comparison_plot=args.comparison_plot,
            suffix="_refined",
        )
        _write_product(refined_rec, data, output_dir, suffix="_refined")
        summary["refine"] = {
            "method": refined.method,
            "epochs": refined.epochs,
            "seconds": round(refined.seconds, 3),
            "stopped": refined.stopped,
            "automatic": automatic,
        }
        if reason:
            summary["refine"]["because"] = reason
        if refined.losses:
            summary["refine"]["final_loss"] = round(refined.losses[-1], 6)
        refined_fit = report_data_fit(
            probe if refined.probe is None else refined.probe,
            data,
            refined.object,
            "the refined",
            "refine longer, or the probe too",
            log,
        )
        summary["refine"]["unexplained_signal"] = round(refined_fit, 5)
        if refined_metrics:
            summary["refine"]["metrics"] = rounded(refined_metrics)
    return print_summary(summary, metrics)


def _reason_to_refine(
    probe: np.ndarray, overlap: float, unexplained: float, spec, source: str, log
) -> str | None:
    """Why ``--refine auto`` refines the network's result, or None: the scan has another
    probe than the model's; the result leaves the data poorly explained; or the probe equals
    its own twin (:mod:`ptychopinn.physics.twin`), however well the result happens to fit."""
    from ptychopinn.physics.twin import TWIN_SYMMETRIC, twin_symmetry
    from ptychopinn.refine.data_fit import POOR_FIT
    from ptychopinn.refine.scan_probe import PROBE_MATCH

    if overlap < PROBE_MATCH:
        return "another probe"
    if unexplained > POOR_FIT:
        return "unexplained signal"
    symmetry = twin_symmetry(probe)
    if symmetry <= TWIN_SYMMETRIC:
        return None
    log.warning(
        "%s: the probe equals its own twin (twin symmetry %.3f, above %.2f): a single "
        "pattern cannot tell half of the object, so the network's result is refined (%s:%d, "
        "--refine auto)",
        source,
        symmetry,
        TWIN_SYMMETRIC,
        spec.method,
        spec.epochs,
    )
    return "twin-symmetric probe"


def _pytorch_twin(loaded, device):
    """The model the refinement and the data-fit check (PyTorch physics) work with: a
    TensorFlow model's weights converted, else the model itself."""
    if loaded.backend == "pytorch":
        return loaded.model
    from ptychopinn.bundle import load_model

    return load_model(loaded.path, device=device).model


def product_name(suffix: str = "") -> str:
    """The Ptychodus product written next to ``reconstruction{suffix}.npz``."""
    return f"reconstruction{suffix}_product.h5"


def _write_product(rec, data, output_dir, suffix: str = "") -> Path | None:
    """The object as a Ptychodus product (opens in Ptychodus, refinable there)."""
    from ptychopinn.data.ptychodus_files import ptychodus_available, save_product

    path = Path(output_dir) / product_name(suffix)
    if not ptychodus_available():
        path.unlink(missing_ok=True)  # an earlier run's would pass for this one's
        logging.getLogger(__name__).info(
            "%s not written: Ptychodus is not installed (pip install 'ptychopinn[ptychodus]')",
            path.name,
        )
        return None
    return save_product(path, rec, data)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
