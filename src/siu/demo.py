"""The demo's story after the world and its model: SIU on one concept, then every metric."""

from __future__ import annotations

import shutil
from pathlib import Path

from siu.bench.load import load_benchmark
from siu.eval.run import evaluate
from siu.unlearn.run import UnlearnConfig, unlearn


def unlearn_and_evaluate(world: Path, model: Path, home: Path, concept: str | None = None) -> Path:
    """Unlearn ``concept`` (default: the first person) with SIU's defaults, evaluate; return the report."""
    bench = load_benchmark(world)
    if concept is None:
        record = next((c for c in bench.concepts if c.category == "person"), bench.concepts[0])
    else:
        record = bench.concept(concept)
    where = home / record.slug
    unlearned, evaluation = where / "unlearned", where / "eval"
    print(f"[unlearn] SIU on {record.name!r} from its one forget image -> {unlearned}")
    run = unlearn(model, record.slug, None, world, UnlearnConfig(seed=0), unlearned, overwrite=True)
    print(f"[eval] every metric, G-Eval by the world's rubric judge -> {evaluation}")
    evaluate(unlearned, model, world, record.slug, evaluation, judge="rubric", overwrite=True, run=run)
    shutil.copyfile(evaluation / "report.html", where / "report.html")
    return where / "report.html"
