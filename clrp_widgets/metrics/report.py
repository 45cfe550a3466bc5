"""Turning an ``evaluate`` Dataset into the paper-shaped table and the JSON summary."""

from __future__ import annotations

import math
from typing import Any

import xarray as xr


def scores_dict(ds: xr.Dataset) -> dict[str, dict[str, float | None]]:
    """``{method: {metric: score}}`` with NaN written as None (valid JSON)."""
    out: dict[str, dict[str, float | None]] = {}
    for method in ds["method"].values.tolist():
        row = ds["score"].sel({"method": method})
        out[method] = {
            metric: (None if math.isnan(v) else round(float(v), 6))
            for metric, v in zip(ds["metric"].values.tolist(), row.values.tolist(), strict=True)
        }
    return out


def format_table(ds: xr.Dataset, digits: int = 3) -> str:
    """A plain-text table: methods as rows, metrics as columns (↑ higher / ↓ lower is better).

    Each cell is ``score ± standard error``; the best method per column is marked ``*``.
    """
    metrics = ds["metric"].values.tolist()
    methods = ds["method"].values.tolist()
    header = ["method"] + [
        f"{m} {'↑' if hib else '↓'}"
        for m, hib in zip(metrics, ds["higher_is_better"].values.tolist(), strict=True)
    ]
    best = _best(ds)
    rows = []
    for method in methods:
        cells = [method]
        for metric in metrics:
            s = float(ds["score"].sel({"method": method, "metric": metric}))
            e = float(ds["stderr"].sel({"method": method, "metric": metric}))
            cell = "n/a" if math.isnan(s) else f"{s:.{digits}f}"
            if not math.isnan(e):
                cell += f" ± {e:.{digits}f}"
            cells.append(cell + (" *" if best.get(metric) == method else ""))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_line(header, widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(r, widths) for r in rows]
    n = int(ds.attrs.get("n_images", 0))
    lines.append(
        f"({n} images, model {ds.attrs.get('model', '?')}, targets: "
        f"{ds.attrs.get('targets', '?')}; * best per column; ± standard error)"
    )
    return "\n".join(lines)


def format_markdown(ds: xr.Dataset, digits: int = 3) -> str:
    """The table of :func:`format_table` as a Markdown table (best per column in bold)."""
    metrics = ds["metric"].values.tolist()
    arrows = ["↑" if h else "↓" for h in ds["higher_is_better"].values.tolist()]
    best = _best(ds)
    lines = [
        "| method | " + " | ".join(f"{m} {a}" for m, a in zip(metrics, arrows, strict=True)) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for method in ds["method"].values.tolist():
        cells = []
        for metric in metrics:
            sel = {"method": method, "metric": metric}
            s, e = float(ds["score"].sel(sel)), float(ds["stderr"].sel(sel))
            cell = "n/a" if math.isnan(s) else f"{s:.{digits}f}"
            cell += "" if math.isnan(e) else f" ± {e:.{digits}f}"
            cells.append(f"**{cell}**" if best.get(metric) == method else cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best(ds: xr.Dataset) -> dict[str, Any]:
    out = {}
    for metric, hib in zip(
        ds["metric"].values.tolist(), ds["higher_is_better"].values, strict=True
    ):
        col = ds["score"].sel(metric=metric)
        if col.notnull().any() and col.sizes["method"] > 1:
            idx = col.fillna(-math.inf if hib else math.inf)
            out[metric] = str((idx.idxmax() if hib else idx.idxmin()).item())
    return out


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
