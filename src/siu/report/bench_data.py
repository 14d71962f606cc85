"""The cells of a ``siu bench run`` as the report reads them, their spreads, and ``results.csv``.

results.json holds each cell's metrics; the cell's folder (``cells/<name>/``) adds what the report
needs beyond the numbers: the original model's value of each figure and the reason of each missing
metric (metrics.json), the training configuration (run.json), the answers and the cell's own page.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siu.eval.metrics import METRICS

RETAIN = "retain"  # the method name of the gold retain models' rows
RUN_SKIP = ("losses", "dataset", "model", "model_abspath")  # per-step / per-sample records and temp paths


def cell_name(method: str, steps: int, seed: int, slug: str) -> str:
    return f"{RETAIN}-{slug}" if method == RETAIN else f"{method}-s{steps}-seed{seed}-{slug}"


def number(value: Any) -> float | None:
    """A finite number as float; None for anything else (None, nan, strings, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class Cell:
    method: str
    steps: int
    seed: int
    concept: str
    metrics: dict[str, float | None]
    train_seconds: float | None = None
    original: dict[str, float] = field(default_factory=dict)  # the original model's values, this concept
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value
    details: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] | None = None  # run.json (unlearned cells only)
    files: tuple[str, ...] = ()  # what the cell's folder holds, relative to the bench folder

    @property
    def name(self) -> str:
        return cell_name(self.method, self.steps, self.seed, self.concept)

    @property
    def is_retain(self) -> bool:
        return self.method == RETAIN

    def value(self, key: str) -> float | None:
        return self.metrics.get(key)

    def why_missing(self, key: str) -> str:
        # the same words for every cell, so that the report can count cells per reason
        if key in self.missing:
            return self.missing[key]
        if key not in self.metrics:
            return "not in the cell's results (the siu that ran it did not measure it)"
        if self.link("metrics.json") is None:
            return "no reason recorded (the cell's metrics.json is absent)"
        return "no reason recorded in the cell's metrics.json"

    def link(self, file: str) -> str | None:
        path = f"cells/{self.name}/{file}"
        return path if path in self.files else None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object, or {} when the file is absent or damaged (the report draws what it has)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dicts(*candidates: Any) -> dict[str, Any]:
    """The first dict among ``candidates``, merged over the later ones (earlier sources win)."""
    merged: dict[str, Any] = {}
    for candidate in reversed(candidates):
        if isinstance(candidate, dict):
            merged.update(candidate)
    return merged


def load_cell(raw: dict[str, Any], out: Path) -> Cell:
    """A results.json cell with what its folder adds. The original model's values and the missing
    reasons are read wherever eval has kept them (their place moved between versions)."""
    cell = Cell(raw["method"], raw["steps"], raw["seed"], raw["concept"], {},
                number(raw.get("train_seconds")))  # fmt: skip
    folder = out / "cells" / cell.name
    mj = _read_json(folder / "metrics.json")
    mj_metrics = mj.get("metrics") if isinstance(mj.get("metrics"), dict) else {}
    details = mj.get("details") if isinstance(mj.get("details"), dict) else {}
    raw_metrics = raw["metrics"]
    cell.metrics = {k: number(v) for k, v in raw_metrics.items() if not isinstance(v, dict)}
    for key, value in raw_metrics.items():  # nan is written by eval for "could not be computed"
        if isinstance(value, float) and math.isnan(value):
            cell.missing.setdefault(key, "not a number (nan)")
    original = _dicts(raw_metrics.get("original"), raw.get("original_values"), mj.get("original_values"),
                      mj_metrics.get("original"), details.get("original"), details.get("attack_original"))  # fmt: skip
    cell.original = {k: v for k, v in ((k, number(v)) for k, v in original.items()) if v is not None}
    missing = _dicts(
        raw_metrics.get("missing"), raw.get("missing"), details.get("missing"), mj_metrics.get("missing")
    )
    cell.missing.update({str(k): str(v) for k, v in missing.items()})
    cell.details = details
    run = _read_json(folder / "run.json")
    cell.run = run or None
    if folder.is_dir():
        cell.files = tuple(sorted(f"cells/{cell.name}/{p.name}" for p in folder.iterdir() if p.is_file()))
    return cell


@dataclass(frozen=True)
class Spread:
    mean: float
    lo: float
    hi: float
    std: float  # 0 for one value
    n: int


def spread(values: Iterable[float | None]) -> Spread | None:
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    lo, hi = min(xs), max(xs)
    # the float mean of equal values can land a rounding step outside them (a negative error bar)
    return Spread(min(max(statistics.fmean(xs), lo), hi), lo, hi, std, len(xs))


def select(
    cells: Sequence[Cell], method: str | None = None, steps: int | None = None, concept: str | None = None
) -> list[Cell]:
    return [
        c for c in cells
        if (method is None or c.method == method) and (steps is None or c.steps == steps)
        and (concept is None or c.concept == concept)
    ]  # fmt: skip


def original_spread(cells: Sequence[Cell], key: str, concept: str | None = None) -> Spread | None:
    """The original model's value, one per concept (every cell of a concept repeats it)."""
    per_concept: dict[str, float] = {}
    for c in cells:
        if key in c.original and (concept is None or c.concept == concept):
            per_concept.setdefault(c.concept, c.original[key])
    return spread(per_concept.values())


def metric_keys(cells: Sequence[Cell]) -> list[str]:
    """eval's metrics in its order, then any other numeric key a cell has."""
    extra = dict.fromkeys(k for c in cells for k in c.metrics if k not in METRICS)
    return [*METRICS, *extra]


def _flatten(value: Any, prefix: str, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), into)
    elif isinstance(value, list | tuple):
        into[prefix] = json.dumps(value, ensure_ascii=False)
    else:
        into[prefix] = value


def csv_row(cell: Cell, keys: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"cell": cell.name, "method": cell.method, "steps": cell.steps, "seed": cell.seed,
                           "concept": cell.concept, "train_seconds": cell.train_seconds,
                           "report": cell.link("report.html") or ""}  # fmt: skip
    row.update({k: cell.metrics.get(k) for k in keys})
    row.update({f"original.{k}": cell.original.get(k) for k in keys})
    row["missing"] = "; ".join(f"{k}: {v}" for k, v in cell.missing.items())
    scalars: dict[str, Any] = {}
    _flatten({k: v for k, v in cell.details.items() if k != "missing"}, "details", scalars)
    row.update({k: v for k, v in scalars.items() if number(v) is not None})
    if cell.run:
        flat: dict[str, Any] = {}
        _flatten({k: v for k, v in cell.run.items() if k not in RUN_SKIP}, "run", flat)
        row.update(flat)
        losses = cell.run.get("losses")
        if isinstance(losses, list) and losses and isinstance(losses[-1], dict):
            row["run.final_loss"] = losses[-1].get("loss")
    return row


def write_results_csv(cells: Sequence[Cell], path: Path) -> list[str]:
    """One row per cell: its coordinates, every metric, the original's values, the missing reasons,
    the numeric details of metrics.json and every field of run.json (flattened with dots); returns the
    columns. Empty fields are values nobody measured."""
    keys = metric_keys(cells)
    rows = [csv_row(c, keys) for c in cells]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return columns
