"""HELM's output as MLflow metrics: every run's stats.json, and the numbers of the summary tables.

Metric names are `<run spec>/<split>/<metric>[/<perturbation>]`, reduced to the characters MLflow
accepts. Stats with no mean (HELM writes `count: 0` entries without one) are skipped.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_\-. /]")
MAX_NAME = 250


def metric_name(*parts: str) -> str:
    """`parts` joined by '/', with what MLflow refuses in a metric name replaced ('=' → '-', others → '_')."""
    joined = "/".join(p.replace(":", "/").replace(",", "/").replace("=", "-") for p in parts if p)
    return _NOT_ALLOWED.sub("_", joined)[:MAX_NAME]


def run_metrics(run_dir: Path) -> dict[str, float]:
    """The means of one run's stats.json, keyed by metric name."""
    stats = json.loads((run_dir / "stats.json").read_text())
    metrics: dict[str, float] = {}
    for stat in stats:
        mean = stat.get("mean")
        if not isinstance(mean, int | float) or isinstance(mean, bool) or not math.isfinite(mean):
            continue
        name = stat.get("name", {})
        perturbation = (name.get("perturbation") or {}).get("name", "")
        key = metric_name(run_dir.name, name.get("split", ""), name.get("name", ""), perturbation)
        metrics[key] = float(mean)
    return metrics


def summary_metrics(suite_dir: Path) -> dict[str, float]:
    """The numeric cells of helm-summarize's tables (groups.json and groups/*.json)."""
    files = [suite_dir / "groups.json", *sorted((suite_dir / "groups").glob("*.json"))]
    metrics: dict[str, float] = {}
    for path in files:
        if not path.is_file():
            continue
        tables = json.loads(path.read_text())
        for table in tables if isinstance(tables, list) else []:
            metrics.update(_table_metrics(table))
    return metrics


def _table_metrics(table: dict[str, Any]) -> dict[str, float]:
    headers = [str(h.get("value", "")) for h in table.get("header", [])]
    metrics: dict[str, float] = {}
    for row in table.get("rows", []):
        if not row:
            continue
        row_name = str(row[0].get("value", ""))
        for header, cell in zip(headers[1:], row[1:], strict=False):
            if header.startswith("#"):  # counts of instances, tokens, models: descriptions, not results
                continue
            value = cell.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                metrics[metric_name("summary", str(table.get("title", "")), row_name, header)] = float(value)
    return metrics


def all_metrics(suite_dir: Path, run_names: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name in run_names:
        metrics.update(run_metrics(suite_dir / name))
    metrics.update(summary_metrics(suite_dir))
    return metrics
