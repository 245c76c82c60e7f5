"""Command-line flags for the few-second training runs of the CLI tests (not a test module)."""

from __future__ import annotations


def fast_train(nepochs: int = 2, *extra: str) -> list[str]:
    """``ptycho_train`` flags: N=32, filters x1, all groups, CPU, no progress bar."""
    return [
        "--N",
        "32",
        "--n_filters_scale",
        "1",
        "--nepochs",
        str(nepochs),
        "--n_groups",
        "none",
        "--torch-accelerator",
        "cpu",
        "--torch-enable-progress-bar",
        "false",
        *extra,
    ]
