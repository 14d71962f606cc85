"""The demo's story after the world and its model: SIU on one concept, then every metric."""

from __future__ import annotations

import shutil
from pathlib import Path

from siu.bench.load import load_benchmark
from siu.eval.run import evaluate
from siu.unlearn.run import UnlearnConfig, unlearn
from siu.world.cache import cached_retain_model


def unlearn_and_evaluate(
    world: Path, model: Path, home: Path, concept: str | None = None, siu_home: Path | None = None
) -> Path:
    """Unlearn ``concept`` (default: the first person) with SIU's defaults, evaluate; return the report.

    A gold retain model of the concept already cached under ``siu_home`` (``siu bench run`` or
    ``siu world pretrain --without`` made one) joins the evaluation; none is trained here.
    """
    bench = load_benchmark(world)
    if concept is None:
        record = next((c for c in bench.concepts if c.category == "person"), bench.concepts[0])
    else:
        record = bench.concept(concept)
    where = home / record.slug
    unlearned, evaluation = where / "unlearned", where / "eval"
    print(f"[unlearn] SIU on {record.name!r} from its one forget image -> {unlearned}")
    run = unlearn(model, record.slug, None, world, UnlearnConfig(seed=0), unlearned, overwrite=True)
    retain = cached_retain_model(world, model, record.slug, siu_home) if siu_home is not None else None
    print(
        f"[eval] every metric, G-Eval by the world's rubric judge -> {evaluation}"
        + (f" (with the cached gold retain model {retain})" if retain else "")
    )
    evaluate(
        unlearned,
        model,
        world,
        record.slug,
        evaluation,
        judge="rubric",
        overwrite=True,
        run=run,
        retain=retain,
    )
    shutil.copyfile(evaluation / "report.html", where / "report.html")
    return where / "report.html"
