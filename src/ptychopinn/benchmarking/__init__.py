"""Benchmarks that compare the PINN with an iterative solver (Pty-Chi LSQML) on one scan.

The iterative solver is an optional extra (``pip install 'ptychopinn[ptychi]'``) and always
runs in a separate process, so its global torch settings (default device and dtype) never
leak into the PINN's process and its timings are not disturbed by ours.
"""

from ptychopinn.benchmarking.lsqml import (
    LSQMLResult,
    LSQMLSettings,
    lsqml_unavailable_reason,
    run_lsqml,
)
from ptychopinn.benchmarking.table import METRIC_KEYS, MethodResult, comparison_rows, format_table

__all__ = [
    "LSQMLResult",
    "LSQMLSettings",
    "METRIC_KEYS",
    "MethodResult",
    "comparison_rows",
    "format_table",
    "lsqml_unavailable_reason",
    "run_lsqml",
]
