"""``siu bench run --forget-sets 1,2,4,8,all``: forgetting many concepts, jointly and one after another.

The concepts are taken round-robin across categories (so that a set of 8 spans every category of the
world), or in the order of ``--concepts``. For each method and each size K, the first K are forgotten
**jointly** in one run (``siu unlearn --concept A,B,...``) and the result is evaluated over the forget
set (``siu eval --concept A,B,...``: every metric per concept and the mean, specificity on the concepts
kept). With ``sequential``, the largest set is also forgotten **one request after another**
(``siu unlearn --sequential``) and every intermediate model is checked on held-out pictures: this
request's concept, the earlier ones (did one come back?), the others. ``forget-sets.json`` holds every
figure (rewritten after each run), ``forget-sets.md`` the tables and ``forget-sets.html`` the plots
against the number of concepts forgotten (joint) and against the request (sequential).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from siu.errors import SiuError
from siu.outputs import PARTIAL, claim_output, clean_partials, release_output, versions
from siu.runtime import Runtime
from siu.unlearn.methods import variants

RESULTS_FILE = "forget-sets.json"
# the figures of a joint cell kept per concept (the mean of every metric is kept too)
PER_CONCEPT_KEYS = ("efficacy_em", "generality_em", "specificity", "fact_retention")


def across_categories(concepts: Sequence[Any]) -> list[str]:
    """Slugs round-robin over the categories (each category in the benchmark's order)."""
    by: dict[str, list[str]] = {}
    for c in concepts:
        by.setdefault(c.category, []).append(c.slug)
    order: list[str] = []
    while any(by.values()):
        for slugs in by.values():
            if slugs:
                order.append(slugs.pop(0))
    return order


def parse_sizes(text: str, available: int) -> list[int]:
    """``"1,2,4,8,all"`` -> ``[1, 2, 4, 8, available]`` (sorted, each once), with clear errors."""
    sizes = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "all":
            sizes.add(available)
            continue
        try:
            size = int(part)
        except ValueError:
            raise SiuError(f"--forget-sets wants sizes such as 1,2,4,8,all; {part!r} is not one") from None
        if not 1 <= size <= available:
            raise SiuError(f"--forget-sets: a set of {size} concepts; the benchmark offers 1 to {available}")
        sizes.add(size)
    if not sizes:
        raise SiuError("--forget-sets needs at least one size, e.g. 1,2,4,8,all")
    return sorted(sizes)


def run_forget_sets(
    model: str | Path | None,
    bench_path: str | Path,
    out: str | Path,
    methods: Sequence[str],
    sizes: str,
    steps: int,
    concepts: Sequence[str] | None = None,
    sequential: bool = False,
    seed: int = 0,
    training: dict[str, Any] | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    eval_options: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    home: Path | None = None,
    overwrite: bool = False,
    check_images: int = 8,
    log: Callable[..., Any] = print,
) -> dict[str, Any]:
    """Joint runs of every size (and with ``sequential`` one sequence) per method; returns the results.

    ``steps`` is each run's step cap (a method with a stopping rule may stop before); ``model=None``
    pre-trains (cached) the synthetic world's model. ``training``, ``method_options`` and
    ``eval_options`` as for :func:`siu.matrix.run_matrix`.
    """
    from siu.bench.load import load_benchmark
    from siu.eval.run import evaluate
    from siu.report.forget_sets import write_forget_sets_report
    from siu.report.html import eval_report
    from siu.runtime import CPU
    from siu.sequence import unlearn_sequentially
    from siu.unlearn.config import PER_RUN_FIELDS, UnlearnConfig
    from siu.unlearn.inputs import check_out
    from siu.unlearn.run import RUN_FILE, unlearn
    from siu.world.cache import cached_retain_model, default_home, world_model

    known = variants()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise SiuError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if steps < 1:
        raise SiuError("--steps must be a positive step cap")
    if check_images < 0:
        raise SiuError("--check-images must be 0 or more")
    methods = list(dict.fromkeys(methods))
    training = dict(training or {})
    bad = set(PER_RUN_FIELDS) & set(training)
    if bad:
        raise SiuError(f"training options {', '.join(sorted(bad))} are set by the forget sets themselves")

    def config(method: str) -> UnlearnConfig:
        name, options = known[method]
        options = {**options, **(method_options or {}).get(method, {})}
        return UnlearnConfig(method=name, options=options, steps=steps, seed=seed, **training)

    for method in methods:  # every run's config is checked before any model is loaded
        config(method).check()
    runtime = (runtime or CPU).check(training=True)
    bench_path = Path(bench_path)
    bench = load_benchmark(bench_path)
    synthetic = bench.manifest.generator is not None
    order = [bench.concept(c).slug for c in concepts] if concepts else across_categories(bench.concepts)
    if len(set(order)) < len(order):
        raise SiuError("--concepts names a concept twice")
    chosen = parse_sizes(sizes, len(order))
    if sequential and max(chosen) < 2:
        raise SiuError("the sequential mode needs a forget set of at least 2 concepts")
    out = Path(out)
    model_dir = Path(model) if model is not None and Path(model).exists() else None
    check_out(out, [bench_path, *([model_dir] if model_dir else [])], model_dir, overwrite)
    eval_options = dict(eval_options or {})
    if eval_options.get("judge") is None:
        eval_options["judge"] = "rubric" if synthetic else None
    claim_output(out)
    if overwrite:  # what an earlier run left (its sequences refuse a non-empty folder; a stale page misleads)
        for name in ("joint", "sequential", "figures"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (RESULTS_FILE, "forget-sets.md", "forget-sets.html"):
            (out / name).unlink(missing_ok=True)
    if model is None:
        if not synthetic:
            raise SiuError("--model is needed unless the benchmark is a synthetic world (siu world build)")
        model = world_model(bench_path, home or default_home(), log=log)
    out.mkdir(parents=True, exist_ok=True)
    clean_partials(out, ".")
    start = time.perf_counter()
    result: dict[str, Any] = {
        "model": str(model), "bench": str(bench_path), "order": order, "sizes": chosen, "steps": steps,
        "seed": seed, "methods": list(methods), "judge": eval_options["judge"], "training": training,
        "runtime": runtime.record(), "joint": [], "sequential": [], "versions": versions(),
    }  # fmt: skip

    def save() -> None:
        result["seconds"] = time.perf_counter() - start
        tmp = out / f".{RESULTS_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, out / RESULTS_FILE)

    # the original's side of each concept in a forget set (it depends on the set: specificity asks the
    # concepts kept), computed by the set's first method and reused by the others, then let go
    sides: dict[str, Any] = {}
    common = {"overwrite": True, "render": eval_report, "sides": sides, "runtime": runtime,
              "log": lambda *_: None, **eval_options}  # fmt: skip
    runs = [(m, k) for k in chosen for m in methods]
    for n, (method, size) in enumerate(runs, start=1):
        if method == methods[0]:
            sides.clear()
        gone = order[:size]
        log(f"[{n}/{len(runs)}] {method}, {size} concept(s) jointly ({time.perf_counter() - start:.0f} s)")
        where = out / "joint" / f"{method}-{size:02d}"
        with tempfile.TemporaryDirectory(prefix=f".{PARTIAL}-{os.getpid()}-", dir=out) as tmp:
            unlearned = Path(tmp) / "model"
            run = unlearn(model, gone, None, bench_path, config(method), unlearned, adapter_only=None,
                          progress=False, runtime=runtime, log=lambda *_: None)  # fmt: skip
            summary = evaluate(unlearned, model, bench_path, gone, where, run=run, **common)
            (where / RUN_FILE).write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")
            if run["saved"] == "adapter":
                os.replace(unlearned, where / "adapter")
        result["joint"].append(_joint_cell(method, size, gone, run, summary))
        save()
    # the reference a set of one has: the first concept's gold retain model, if one is cached (none is
    # trained here; for a larger set none exists, it would have to miss every concept of the set)
    retain = (
        cached_retain_model(bench_path, Path(model), order[0], home or default_home()) if synthetic else None
    )
    if 1 in chosen and retain is not None:
        log(f"the gold retain model of {order[0]} as the reference of a set of one ({retain})")
        summary = evaluate(retain, model, bench_path, order[:1], out / "joint" / "retain-01",
                           other_tokenizer=True, **common)  # fmt: skip
        result["retain"] = {
            **_joint_cell("retain", 1, order[:1], {"steps_taken": 0}, summary),
            "path": str(retain),
        }
        save()
    if sequential:
        gone = order[: max(chosen)]
        for method in methods:
            log(f"{method}: {len(gone)} requests one after another ({time.perf_counter() - start:.0f} s)")
            sequence = unlearn_sequentially(
                model, gone, None, bench_path, config(method), out / "sequential" / method, runtime=runtime,
                progress=False, check_images=check_images, log=lambda *_: None,
            )  # fmt: skip
            result["sequential"].append({"method": method, "concepts": gone, "requests": sequence["requests"],
                                         "before": sequence["before"]})  # fmt: skip
            save()
    save()
    table = forget_sets_table(result)
    (out / "forget-sets.md").write_text(table + "\n", encoding="utf-8")
    write_forget_sets_report(out, result, table)
    log(table)
    log(f"wrote {out}/{RESULTS_FILE}, forget-sets.md, forget-sets.html ({time.perf_counter() - start:.0f} s)")
    release_output(out)
    return result


def _joint_cell(
    method: str, size: int, gone: Sequence[str], run: dict[str, Any], summary: dict[str, Any]
) -> dict[str, Any]:
    if "mean" not in summary:  # a set of one: evaluate() returned that concept's metrics.json
        slug = summary["concept"]["slug"]
        summary = {"mean": summary["metrics"], "metrics": {slug: summary["metrics"]},
                   "original_values": {slug: summary["original_values"]}}  # fmt: skip
    original = summary["original_values"]
    mean_original = {key: _mean([v.get(key) for v in original.values()]) for key in summary["mean"]}
    return {
        "method": method,
        "size": size,
        "concepts": list(gone),
        "steps_taken": run["steps_taken"],
        "stop_reason": (run.get("stopping") or {}).get("reason"),
        "mean": {key: _mean([value]) for key, value in summary["mean"].items()},
        "original_mean": mean_original,
        "per_concept": {
            s: {k: _mean([m.get(k)]) for k in PER_CONCEPT_KEYS} for s, m in summary["metrics"].items()
        },
    }


def _mean(values: Sequence[Any]) -> float | None:
    """The mean of the numbers among ``values`` (NaN and missing left out); None if there are none."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return sum(numbers) / len(numbers) if numbers else None


def _fmt(value: Any) -> str:
    return (
        "-" if not isinstance(value, int | float) else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    )


def forget_sets_table(result: dict[str, Any]) -> str:
    """The joint runs (means over each forget set) and the sequences (per request), as text tables."""
    from siu.tables import format_table

    parts = []
    if result["joint"]:
        rows = []
        for cell in result["joint"]:
            worst = min((v["generality_em"] for v in cell["per_concept"].values()
                         if isinstance(v.get("generality_em"), int | float)), default=None)  # fmt: skip
            rows.append([cell["method"], cell["size"], cell["steps_taken"], _fmt(cell["mean"]["generality_em"]),
                         _fmt(worst), _fmt(cell["mean"]["specificity"]), _fmt(cell["mean"]["fact_retention"])])  # fmt: skip
        parts.append(
            "Joint: the first K concepts forgotten in one run; means over the forget set (specificity on the "
            "concepts kept).\n"
            + format_table(
                ["method", "K", "steps", "generality EM", "worst concept EM", "specificity", "facts kept"],
                rows,
            )  # fmt: skip
        )
    if result.get("retain"):
        r = result["retain"]
        parts[-1] += (f"\nReference for K=1: the gold retain model of {r['concepts'][0]}: generality EM "
                      f"{_fmt(r['mean']['generality_em'])}, specificity {_fmt(r['mean']['specificity'])}")  # fmt: skip
    for seq in result["sequential"]:
        rows = [[r["request"], r["concept"], r["steps_taken"], _fmt(r.get("forget")), _fmt(r.get("earlier_max")),
                 _fmt(r.get("others_relative")), _fmt(r.get("facts_min"))] for r in seq["requests"]]  # fmt: skip
        parts.append(
            f"Sequential ({seq['method']}): one request after another; held-out recognition after each.\n"
            + format_table(
                ["request", "concept", "steps", "recognised", "earlier max", "others kept", "facts min"], rows
            )  # fmt: skip
        )
    return "\n\n".join(parts)
