"""``ptycho_train``: train a model from NPZ, Ptychodus product or CXI data; writes
``wts.h5.zip`` and logs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptychopinn.bundle import save_model
from ptychopinn.cli.common import configure_logging, print_summary, run_cli
from ptychopinn.cli.config_flags import (
    add_bool_flag,
    add_config_flags,
    add_execution_flags,
    collect,
    execution_overrides,
    moved_training_overrides,
)
from ptychopinn.config import (
    ExecutionConfig,
    ModelConfig,
    TrainingConfig,
    config_sections,
    load_execution_config,
    load_training_config,
)
from ptychopinn.data.ptychodus_files import load_scan
from ptychopinn.errors import ConfigError
from ptychopinn.options import commented_yaml, recipes, save_config_yaml

CONFIG_HEADER = (
    "PtychoPINN training config: ptycho_train --config THIS_FILE (flags override it).\n"
    "Each key's comment says what it does; docs/options.md lists them all."
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="ptycho_train",
        description="Train a PtychoPINN model. Precedence: command line > --config YAML > "
        "defaults. Boolean values accept true/false.",
    )
    p.add_argument(
        "--config",
        default=None,
        help="YAML config (flat or with sections), or a shipped recipe: " + ", ".join(recipes()),
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (defaults < --config < flags) as commented YAML "
        "and exit; redirect it to a file to start your own",
    )
    add_bool_flag(
        p,
        "do_stitching",
        False,
        "reconstruct the test data after training and write pictures/metrics",
    )
    p.add_argument("--resume_from", default=None, help="Lightning checkpoint to continue from")
    p.add_argument("--verbose", action="store_true")
    model_names = add_config_flags(p, ModelConfig)
    training_names = add_config_flags(p, TrainingConfig)
    add_execution_flags(p)
    p.set_defaults(_model_names=model_names, _training_names=training_names)
    return p


def check_backend(training: TrainingConfig, execution: ExecutionConfig) -> None:
    """Before any work: the TensorFlow backend is installed and supports the execution
    settings (one message naming the extra or the setting otherwise)."""
    if training.backend == "tensorflow":
        from ptychopinn.tf_backend import import_tensorflow

        import_tensorflow()
        from ptychopinn.tf_backend.train import check_execution

        check_execution(execution)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    overrides = {
        **moved_training_overrides(args),
        **collect(args, args._model_names + args._training_names),
    }
    training = load_training_config(args.config, overrides)
    execution = load_execution_config(args.config, execution_overrides(args))
    check_backend(training, execution)
    if args.print_config:
        print(commented_yaml(config_sections(training, execution), CONFIG_HEADER), end="")
        return 0
    if not training.train_data_file:
        raise ConfigError(
            "train_data_file: expected a path to an NPZ file, or several (--train_data_file "
            "a.npz b.npz, or the YAML), found none"
        )
    if args.do_stitching and not training.test_data_file:
        raise ConfigError(
            "--do_stitching: expected test_data_file (the scan to reconstruct after training), "
            "found none"
        )
    from ptychopinn.workflows.lock import output_dir_lock

    with output_dir_lock(training.output_dir):
        return run_training(
            training, execution, do_stitching=args.do_stitching, resume_from=args.resume_from
        )


def run_training(
    training: TrainingConfig,
    execution: ExecutionConfig,
    *,
    do_stitching: bool = False,
    resume_from: str | None = None,
) -> int:
    """Train, then write the archive, resolved config, loss curve and optional reconstruction."""
    from ptychopinn.plotting import save_loss_curve
    from ptychopinn.workflows.execution import log_run_outputs, resolve_device
    from ptychopinn.workflows.infer import reconstruct
    from ptychopinn.workflows.outputs import write_outputs
    from ptychopinn.workflows.train import check_resume, check_scan_sizes, train

    out = Path(training.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = training.train_data_files
    train_data = [load_scan(f) for f in files] if len(files) > 1 else load_scan(files[0])
    test_data = load_scan(training.test_data_file) if training.test_data_file else None
    # Before anything in the output directory is rewritten:
    check_scan_sizes(training, train_data, test_data)
    tensorflow = training.backend == "tensorflow"
    if tensorflow:
        from ptychopinn.tf_backend import train as tf_train

        check_resume, train = tf_train.check_resume, tf_train.train
    if resume_from:
        check_resume(resume_from, training.nepochs, training.model)
    save_config_yaml(
        config_sections(training, execution), out / "resolved_config.yaml", CONFIG_HEADER
    )
    result = train(
        train_data,
        training,
        execution,
        test_data=test_data,
        resume_from=resume_from,
        output_dir=out,
    )
    if tensorflow:
        model, epochs, trainer = result.model, result.epochs, None
    else:
        if result.trainer.global_rank != 0:
            return 0
        model, epochs = result.module.model, result.trainer.current_epoch
        trainer = result.trainer
    archive = save_model(model, out, training_config=training, execution_config=execution)
    summary = {"archive": str(archive), "epochs": epochs, "backend": training.backend}
    curve = save_loss_curve(out / "logs" / "metrics.csv", out / "loss_curve.png")
    if curve:
        summary["loss_curve"] = str(curve)
    metrics = None
    if do_stitching:
        if test_data is None:
            raise ConfigError("--do_stitching needs test_data_file (the scan to reconstruct)")
        device = resolve_device(execution.accelerator)
        rec = reconstruct(
            model,
            test_data,
            device=device,
            batch_size=execution.inference_batch_size,
            progress=True,
        )
        metrics = write_outputs(rec, test_data, out)
    pictures = sorted(out.glob("*.png")) if do_stitching else [curve]
    outputs = [archive, out / "resolved_config.yaml", *pictures]
    if metrics:
        outputs.append(out / "metrics.json")
    if trainer is not None:  # MLflow / TensorBoard artefacts (the pytorch backend's loggers)
        log_run_outputs(trainer, outputs, metrics)
    return print_summary(summary, metrics)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
