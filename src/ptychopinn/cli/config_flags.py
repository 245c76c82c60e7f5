"""argparse flags generated from the config dataclasses, so every field has its flag."""

from __future__ import annotations

import argparse
import logging
import typing
from dataclasses import fields

from ptychopinn.config import MOVED_TO_TRAINING, ExecutionConfig, join_paths, parse_bool

TORCH_PREFIX = "torch-"


def torch_flag(name: str) -> str:
    """The ``--torch-<field>`` flag (dashes) of an execution field."""
    return f"--{TORCH_PREFIX}{name.replace('_', '-')}"


def add_bool_flag(parser, name: str, default: bool, help: str | None = None) -> None:
    """``--name`` alone means true; ``--name true|false`` sets it explicitly."""
    parser.add_argument(
        f"--{name}", type=parse_bool, nargs="?", const=True, default=default, help=help
    )


def _help(f, default) -> str:
    """The field's description and its default, for ``--help`` (argparse escapes ``%``)."""
    doc = f.metadata.get("doc", "").replace("%", "%%")
    return f"{doc} (default: {default})" if doc else f"(default: {default})"


def prefixed(prefix: str, name: str) -> str:
    """``name`` with ``prefix`` in front, unless it already starts with it."""
    return name if name.startswith(prefix) else f"{prefix}{name}"


def add_config_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip=(),
    prefix: str = "",
    title: str | None = None,
) -> list[str]:
    """``--<prefix><field>`` for each dataclass field; values stay strings, the config
    coerces them. Returns the argument names (``dest``), for :func:`collect`.

    A field's ``aliases`` metadata adds other spellings of its flag (e.g. older names).
    """
    names = []
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} fields")
    for f in fields(cls):
        if f.name in skip or f.name == "model":
            continue
        dest = prefixed(prefix, f.name)
        default = f.default if not callable(f.default_factory) else f.default_factory()  # type: ignore[misc]
        default = f.metadata.get("default_text", default)
        nargs = f.metadata.get("nargs")
        several = {None: "", "+": "; several values allowed"}.get(nargs, f"; {nargs} values")
        flag_alone = {}
        if hints[f.name] is bool:  # --flag alone means true; --flag false switches it off
            nargs, flag_alone = "?", {"const": "true"}
        group.add_argument(
            f"--{dest}",
            *f.metadata.get("aliases", ()),
            dest=dest,
            default=None,
            metavar=f.metadata.get("metavar", "VALUE"),
            nargs=nargs,
            help=_help(f, default) + several,
            **flag_alone,
        )
        names.append(dest)
    return names


def add_execution_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None):
    """``--torch-<field>`` (dashes) for the execution config fields."""
    group = parser.add_argument_group("PyTorch execution")
    for f in fields(ExecutionConfig):
        if only is not None and f.name not in only:
            continue
        group.add_argument(
            torch_flag(f.name),
            dest=f"torch_{f.name}",
            default=None,
            metavar="VALUE",
            help=_help(f, f.metadata.get("default_text", f.default)),
        )
    if only is None:  # the 0.1.0 spellings of the optimiser flags, now training flags
        for name in MOVED_TO_TRAINING:
            group.add_argument(
                torch_flag(name),
                dest=f"torch_{name}",
                default=None,
                help=argparse.SUPPRESS,
            )


def collect(
    args: argparse.Namespace, names: list[str], *, cls: type | None = None, prefix: str = ""
) -> dict:
    """The flags given; a several-value flag becomes one ``os.pathsep``-joined string.

    With ``cls``, the keys are its field names (the ``prefix`` of :func:`add_config_flags`
    taken off).
    """
    values = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    values = {n: join_paths(v) if isinstance(v, list) else v for n, v in values.items()}
    if cls is None:
        return values
    field_of = {prefixed(prefix, f.name): f.name for f in fields(cls)}
    return {field_of[n]: v for n, v in values.items()}


def moved_training_overrides(args: argparse.Namespace) -> dict:
    """The optimiser settings given with their old ``--torch-`` flags (with a warning)."""
    given = {n: getattr(args, f"torch_{n}", None) for n in MOVED_TO_TRAINING}
    given = {n: v for n, v in given.items() if v is not None}
    for name in given:
        logging.getLogger(__name__).warning("%s is deprecated; use --%s", torch_flag(name), name)
    return given


def execution_overrides(args: argparse.Namespace) -> dict:
    return {
        f.name: getattr(args, f"torch_{f.name}")
        for f in fields(ExecutionConfig)
        if getattr(args, f"torch_{f.name}", None) is not None
    }
