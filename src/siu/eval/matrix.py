"""``siu bench run``: unlearn and evaluate a matrix of methods x concepts x steps x seeds.

Every cell is one ``siu unlearn`` and one ``siu eval`` (all metrics; the rubric judge on a synthetic
world, none otherwise). Results are written as they come (``results.json`` is rewritten after each
cell, so an interrupted run keeps what it finished) and summarised as a markdown table of mean +- std
over seeds per method and steps, like the paper's Table 1.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from siu.errors import SiuError

# method name -> UnlearnConfig fields; the ablation rows are SIU without one of its masks
VARIANTS: dict[str, dict[str, Any]] = {
    "siu": {"method": "siu"},
    "po": {"method": "po"},
    "ga": {"method": "ga"},
    "ga_kl": {"method": "ga_kl"},
    "siu_no_token_mask": {"method": "siu", "use_token_mask": False},
    "siu_no_vocab_mask": {"method": "siu", "use_vocab_mask": False},
}
TABLE_METRICS = (
    "efficacy_em",
    "generality_em",
    "g_eval",
    "c_dis",
    "specificity",
    "fluency_ppl",
    "diversity",
    "fact_retention",
    "jailbreak_multilingual",
    "jailbreak_multihop",
)


def _mean_std(values: Sequence[float | None]) -> str:
    xs = [v for v in values if v is not None and not math.isnan(v)]
    if not xs:
        return "missing"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.fmean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def markdown_table(cells: Sequence[dict[str, Any]]) -> str:
    """Rows = (method, steps); columns = metrics as mean ± std over seeds and concepts."""
    keys = sorted(
        {(c["method"], c["steps"]) for c in cells}, key=lambda k: (list(VARIANTS).index(k[0]), k[1])
    )
    lines = [
        "| method | steps | runs | " + " | ".join(TABLE_METRICS) + " |",
        "|---|---|---|" + "---|" * len(TABLE_METRICS),
    ]
    for method, steps in keys:
        mine = [c for c in cells if c["method"] == method and c["steps"] == steps]
        row = [_mean_std([c["metrics"].get(m) for c in mine]) for m in TABLE_METRICS]
        lines.append(f"| {method} | {steps} | {len(mine)} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def run_matrix(
    model: str | Path,
    bench_path: str | Path,
    out: str | Path,
    methods: Sequence[str],
    concepts: Sequence[str] | None,
    steps: Sequence[int],
    seeds: int,
    overwrite: bool = False,
    log: Callable[..., Any] = print,
) -> list[dict[str, Any]]:
    from siu.bench.load import load_benchmark
    from siu.eval.run import evaluate
    from siu.outputs import versions
    from siu.unlearn.run import UnlearnConfig, check_out, unlearn

    unknown = [m for m in methods if m not in VARIANTS]
    if unknown:
        raise SiuError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if not steps or any(s < 1 for s in steps) or seeds < 1:
        raise SiuError("--steps needs positive integers and --seeds a positive count")
    bench = load_benchmark(bench_path)
    records = [bench.concept(c) for c in concepts] if concepts else list(bench.concepts)
    out = Path(out)
    check_out(out, [Path(bench_path), Path(model)], Path(model) if Path(model).exists() else None, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    judge = "rubric" if bench.manifest.generator is not None else None
    total = len(methods) * len(records) * len(steps) * seeds
    cells: list[dict[str, Any]] = []
    start = time.perf_counter()
    for method in methods:
        for n_steps in steps:
            for seed in range(seeds):
                for record in records:
                    k = len(cells) + 1
                    log(f"[{k}/{total}] {method}, {n_steps} steps, seed {seed}: {record.name} "
                        f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
                    with tempfile.TemporaryDirectory(dir=out) as tmp:
                        cfg = UnlearnConfig(**VARIANTS[method], steps=n_steps, seed=seed)
                        unlearned = Path(tmp) / "model"
                        run = unlearn(
                            model,
                            record.slug,
                            None,
                            bench_path,
                            cfg,
                            unlearned,
                            progress=False,
                            log=lambda *_: None,
                        )
                        where = out / "cells" / f"{method}-s{n_steps}-seed{seed}-{record.slug}"
                        result = evaluate(unlearned, model, bench_path, record.slug, where, judge=judge,
                                          overwrite=True, run=run, log=lambda *_: None)  # fmt: skip
                    cells.append({"method": method, "steps": n_steps, "seed": seed, "concept": record.slug,
                                  "metrics": result["metrics"], "train_seconds": run["train_seconds"]})  # fmt: skip
                    summary = {"model": str(model), "bench": str(bench_path), "judge": judge, "cells": cells,
                               "versions": versions()}  # fmt: skip
                    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown_table(cells)
    (out / "results.md").write_text(
        f"Means ± std over {seeds} seed(s) x {len(records)} concept(s); G-Eval judge: {judge or 'none'}.\n\n"
        + table
        + "\n"
    )
    log(table)
    log(f"wrote {out}/results.json, results.md and cells/*/report.html ({time.perf_counter() - start:.0f} s)")
    return cells
