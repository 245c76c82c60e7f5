"""The comparison table: quality, time and throughput per method, plus PINN/LSQML ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Quality columns, all computed by :func:`ptychopinn.metrics.evaluate` after alignment.
METRIC_KEYS = ("amp_ssim", "phase_ssim", "amp_psnr", "phase_psnr", "frc50")
#: Every column of the table, in order.
COLUMNS = ("method", *METRIC_KEYS, "seconds", "patterns_per_s")
_DIGITS = {"seconds": 2, "patterns_per_s": 1, "amp_psnr": 2, "phase_psnr": 2}


@dataclass
class MethodResult:
    """One method's outcome on a scan: quality (None without ground truth) and time."""

    name: str
    seconds: float
    n_patterns: int
    metrics: dict[str, float] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def patterns_per_s(self) -> float:
        return self.n_patterns / self.seconds if self.seconds > 0 else math.inf

    def row(self) -> dict:
        """The table row: ``method``, the quality columns, ``seconds``, ``patterns_per_s``."""
        metrics = self.metrics or {}
        row: dict = {"method": self.name}
        row.update({k: metrics.get(k) for k in METRIC_KEYS})
        row["seconds"] = self.seconds
        row["patterns_per_s"] = self.patterns_per_s
        return row


def _ratio(a, b) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return None
    return a / b


def ratio_row(numerator: dict, denominator: dict, name: str) -> dict:
    """Column-wise ``numerator / denominator`` (None where either is missing or zero).

    For ``seconds`` a ratio below 1 means the numerator is faster; for ``patterns_per_s``
    the ratio is the speed-up.
    """
    row: dict = {"method": name}
    for key in COLUMNS[1:]:
        row[key] = _ratio(numerator.get(key), denominator.get(key))
    return row


def comparison_rows(
    methods: Sequence[MethodResult], *, ratio_of: tuple[str, str] | None = ("PINN", "LSQML")
) -> list[dict]:
    """One row per method, then the ``A/B`` ratio row when both named methods are present."""
    rows = [m.row() for m in methods]
    if ratio_of is not None:
        by_name = {r["method"]: r for r in rows}
        a, b = ratio_of
        if a in by_name and b in by_name:
            rows.append(ratio_row(by_name[a], by_name[b], f"{a}/{b}"))
    return rows


def _cell(key: str, value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        return "inf" if value > 0 else "n/a"
    if key.endswith("_ssim") or key == "frc50":
        return f"{value:.3f}"
    digits = _DIGITS.get(key, 3)
    if abs(value) >= 1e4:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def format_table(rows: Sequence[dict], columns: Sequence[str] = COLUMNS) -> str:
    """Rows as an aligned plain-text table (missing values print as ``n/a``)."""
    cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    head = "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(columns, widths, strict=True))
    )
    lines = [head, "  ".join("-" * w for w in widths)]
    for row in cells:
        lines.append(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def plain_table(rows: Sequence[dict]) -> str:
    """Rows of equal keys as space-separated, right-aligned columns under a header line."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["  ".join(keys)]
    lines += ["  ".join(str(r[k]).rjust(len(k)) for k in keys) for r in rows]
    return "\n".join(lines)
