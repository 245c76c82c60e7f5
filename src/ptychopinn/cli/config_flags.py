"""argparse flags generated from the config dataclasses, so every field has its flag."""

from __future__ import annotations

import argparse
import logging
from dataclasses import fields

from ptychopinn.config import MOVED_TO_TRAINING, ExecutionConfig, join_paths, parse_bool

TORCH_PREFIX = "torch-"


def add_bool_flag(parser, name: str, default: bool, help: str | None = None) -> None:
    """``--name`` alone means true; ``--name true|false`` sets it explicitly."""
    parser.add_argument(
        f"--{name}", type=parse_bool, nargs="?", const=True, default=default, help=help
    )


def _help(f, default) -> str:
    """The field's description and its default, for ``--help`` (argparse escapes ``%``)."""
    doc = f.metadata.get("doc", "").replace("%", "%%")
    return f"{doc} (default: {default})" if doc else f"(default: {default})"


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *, skip=()) -> list[str]:
    """``--<field>`` for each dataclass field; values stay strings, the config coerces them.

    A field's ``aliases`` metadata adds other spellings of its flag (e.g. older names).
    """
    names = []
    group = parser.add_argument_group(f"{cls.__name__} fields")
    for f in fields(cls):
        if f.name in skip or f.name == "model":
            continue
        default = f.default if not callable(f.default_factory) else f.default_factory()  # type: ignore[misc]
        default = f.metadata.get("default_text", default)
        nargs = f.metadata.get("nargs")
        several = {None: "", "+": "; several values allowed"}.get(nargs, f"; {nargs} values")
        group.add_argument(
            f"--{f.name}",
            *f.metadata.get("aliases", ()),
            dest=f.name,
            default=None,
            metavar=f.metadata.get("metavar", "VALUE"),
            nargs=nargs,
            help=_help(f, default) + several,
        )
        names.append(f.name)
    return names


def add_execution_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None):
    """``--torch-<field>`` (dashes) for the execution config fields."""
    group = parser.add_argument_group("PyTorch execution")
    for f in fields(ExecutionConfig):
        if only is not None and f.name not in only:
            continue
        group.add_argument(
            f"--{TORCH_PREFIX}{f.name.replace('_', '-')}",
            dest=f"torch_{f.name}",
            default=None,
            metavar="VALUE",
            help=_help(f, f.metadata.get("default_text", f.default)),
        )
    if only is None:  # the 0.1.0 spellings of the optimiser flags, now training flags
        for name in MOVED_TO_TRAINING:
            group.add_argument(
                f"--{TORCH_PREFIX}{name.replace('_', '-')}",
                dest=f"torch_{name}",
                default=None,
                help=argparse.SUPPRESS,
            )


def collect(args: argparse.Namespace, names: list[str]) -> dict:
    """The flags given; a several-value flag becomes one ``os.pathsep``-joined string."""
    values = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return {n: join_paths(v) if isinstance(v, list) else v for n, v in values.items()}


def moved_training_overrides(args: argparse.Namespace) -> dict:
    """The optimiser settings given with their old ``--torch-`` flags (with a warning)."""
    given = {n: getattr(args, f"torch_{n}", None) for n in MOVED_TO_TRAINING}
    given = {n: v for n, v in given.items() if v is not None}
    for name in given:
        logging.getLogger(__name__).warning(
            "--%s%s is deprecated; use --%s", TORCH_PREFIX, name.replace("_", "-"), name
        )
    return given


def execution_overrides(args: argparse.Namespace) -> dict:
    return {
        f.name: getattr(args, f"torch_{f.name}")
        for f in fields(ExecutionConfig)
        if getattr(args, f"torch_{f.name}", None) is not None
    }
