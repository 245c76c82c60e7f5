"""Options that describe themselves: commented YAML, the options reference, shipped recipes.

Every config field carries a one-line description (:func:`ptychopinn.config.option`). This
module renders them as a commented YAML (``resolved_config.yaml``, ``ptycho_train
--print-config``) and as the Markdown table of ``docs/options.md``, and finds the recipe
templates shipped in ``ptychopinn/recipes/`` (``--config cpu_quick``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ptychopinn.atomic import atomic_write
from ptychopinn.config import (
    RECIPE_DIR,
    SECTION_CLASSES,
    describe,
)

_SECTION_TITLES = {
    "model": "the network and physics model",
    "training": "what to train on, the loss and the sampling",
    "inference": "which model to apply to which scan",
    "execution": "how torch runs: hardware, optimiser schedule, logging",
}


def recipes() -> dict[str, Path]:
    """The shipped recipe templates, by name (``cpu_quick``: ``recipes/cpu_quick.yaml``)."""
    return {p.stem: p for p in sorted(RECIPE_DIR.glob("*.yaml"))}


def _yaml_line(key: str, value: Any) -> str:
    text = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False, width=1000)
    return text.strip()


def commented_yaml(sections: Mapping[str, Mapping[str, Any]], header: str = "") -> str:
    """A config as YAML, each key preceded by its description as a comment.

    ``sections`` maps section names (model, training, inference, execution) to plain dicts
    such as :func:`ptychopinn.config.config_sections` returns; keys without a field of that
    section are written without a comment.
    """
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in sections.items():
        cls = SECTION_CLASSES.get(section)
        if lines:
            lines.append("")
        title = _SECTION_TITLES.get(section)
        lines.append(f"{section}:" + (f"  # {title}" if title else ""))
        known = {f.name for f in dataclasses.fields(cls)} if cls else set()
        for key, value in values.items():
            if key == "model" and isinstance(value, Mapping):
                continue  # a nested model is written as its own section
            if key in known:
                lines.append(f"  # {describe(cls, key)}")
            lines.append("  " + _yaml_line(key, value))
    return "\n".join(lines) + "\n"


def save_config_yaml(
    sections: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str], header: str = ""
) -> Path:
    """Write :func:`commented_yaml` atomically (a temporary file renamed over ``path``)."""
    text = commented_yaml(sections, header)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _default_text(f: dataclasses.Field) -> str:
    if "default_text" in f.metadata:
        return str(f.metadata["default_text"])
    value = f.default if f.default is not dataclasses.MISSING else None
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def options_markdown() -> str:
    """The options reference (``docs/options.md``): one table per config section."""
    out = [
        "# Options",
        "",
        "Generated from the descriptions in `src/ptychopinn/config.py` "
        "(`python -m ptychopinn.options > docs/options.md`); a test keeps it current.",
        "",
        "On the command line a field is `--<field>` (model, training, inference) or "
        "`--torch-<field>` with dashes (execution); in YAML it goes under its section or at "
        "the top level. `ptycho_train --print-config` prints them all as commented YAML, "
        "and `--config NAME` loads a shipped recipe: "
        + ", ".join(f"`{name}`" for name in recipes())
        + ".",
    ]
    for section, cls in SECTION_CLASSES.items():
        out += ["", f"## {section}: {_SECTION_TITLES[section]}", ""]
        out += _field_table(cls, skip=("model",))
    from ptychopinn.refine.object import ObjectRefineSettings

    out += [
        "",
        "## ptycho_inference --refine object:K: the object refinement",
        "",
        "Flags `--refine_<field>` (`--refine_probe` for `refine_probe`); the epochs are K. "
        "The default, `--refine auto`, runs `object:50` only when the scan has another probe "
        "than the model's, the network's result leaves more than 1.5 % of the measured "
        "signal unexplained, or the probe equals its own twin; `--refine none` never "
        "refines.",
        "",
    ]
    out += _field_table(ObjectRefineSettings, skip=("epochs",))
    return "\n".join(out) + "\n"


def _field_table(cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    """A markdown table of a settings class: field, default, description."""
    rows = ["| field | default | description |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            rows.append(f"| `{f.name}` | `{_default_text(f)}` | {f.metadata['doc']} |")
    return rows


if __name__ == "__main__":
    print(options_markdown(), end="")
