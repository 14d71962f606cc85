"""``siu bench run``: unlearn and evaluate a matrix of methods x concepts x steps x seeds.

Every cell is one ``siu unlearn`` and one ``siu eval`` (all metrics; the rubric judge on a synthetic
world, none otherwise). Results are written as they come (``results.json`` is rewritten after each
cell, so an interrupted run keeps what it finished) and summarised as a markdown table of mean +- std
over seeds per method and steps, like the paper's Table 1, and an HTML report with plots. On a
synthetic world the gold retain models (pre-trained without each concept's pictures, cached) are
evaluated like unlearned models and shown as the reference row ``retain``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siu.errors import SiuError
from siu.outputs import PARTIAL, claim_output, clean_partials, release_output
from siu.report.bench_html import RETAIN, cell_name, write_bench_report
from siu.report.html import eval_report
from siu.report.labels import arrow
from siu.unlearn.methods import variants

if TYPE_CHECKING:
    from siu.runtime import Runtime

# row name -> (method, options): every registered method, then named variants such as the SIU ablations
VARIANTS = variants()
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
    "mia_auc_min_k",
    "attack_relearn",
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
    order = [*VARIANTS, RETAIN]
    keys = sorted({(c["method"], c["steps"]) for c in cells}, key=lambda k: (order.index(k[0]), k[1]))
    lines = [
        "| method | steps | runs | " + " | ".join(f"{m} {arrow(m)}" for m in TABLE_METRICS) + " |",
        "|---|---|---|" + "---|" * len(TABLE_METRICS),
    ]
    for method, steps in keys:
        mine = [c for c in cells if c["method"] == method and c["steps"] == steps]
        row = [_mean_std([c["metrics"].get(m) for c in mine]) for m in TABLE_METRICS]
        shown = "-" if method == RETAIN else str(steps)
        taken = [c["steps_taken"] for c in mine if isinstance(c.get("steps_taken"), int)]
        if taken and any(t != steps for t in taken):  # a stopping rule: steps is the cap
            shown = f"{steps} (stopped after {sum(taken) / len(taken):.1f})"
        lines.append(f"| {method} | {shown} | {len(mine)} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def retain_models(
    retain: str | None,
    model: Path,
    bench_path: Path,
    synthetic: bool,
    slugs: Sequence[str],
    home: Path,
    log: Callable[..., Any],
) -> dict[str, Path]:
    """concept slug -> gold retain model: trained (cached) on a synthetic world with ``auto``, or
    ``retain`` with ``{concept}`` filled in; none with ``none``."""
    if retain is None or retain == "none":
        return {}
    if retain == "auto":
        if not synthetic:
            log("no retain rows: the benchmark is not a synthetic world (give --retain 'DIR/{concept}')")
            return {}
        from siu.world.cache import retain_model

        return {slug: retain_model(bench_path, model, slug, home, log=log) for slug in slugs}
    found = {slug: Path(retain.format(concept=slug)) for slug in slugs}
    absent = [str(p) for p in found.values() if not p.is_dir()]
    if absent:
        raise SiuError(f"retain model(s) not found: {', '.join(absent)}")
    return found


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def defaults_digest(row: str) -> str:
    """A digest of a matrix row's config as siu resolves it from its defaults alone, for both profiles
    (the stopping rule's settings too; not the steps and seed, the matrix's own axes). It changes when
    a newer siu changes one of that method's defaults, so that a resumed run never mixes its cells
    trained under two sets of defaults; the run's own options are compared as its settings."""
    from siu.unlearn.config import UnlearnConfig

    name, options = VARIANTS[row]
    resolved = {}
    for profile in ("tiny", "paper"):
        cfg, _ = UnlearnConfig(method=name, options=dict(options), profile=profile).resolved("", 0)
        record = {k: v for k, v in cfg.record().items() if k not in ("steps", "seed")}
        record["stop_rule"] = dataclasses.asdict(cfg.stop_settings())
        resolved[profile] = record
    text = json.dumps(_jsonable(resolved), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _resumed_cells(out: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished cells of an earlier run into ``out`` with the same settings (else a clear error)."""
    try:
        earlier = json.loads((out / "results.json").read_text())
        cells = earlier["cells"]
    except FileNotFoundError:
        raise SiuError(
            f"--resume: {out} holds no results.json; nothing to resume (leave out --resume)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SiuError(f"--resume: {out}/results.json is unreadable ({err})") from None
    before = earlier.get("settings")
    if before is None:
        raise SiuError(f"--resume: {out}/results.json does not record its settings (made by an older siu)")
    differ = [k for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {before.get(k)!r} then, {settings.get(k)!r} now" for k in differ)
        raise SiuError(f"--resume: {out} was run with other settings ({shown}); use another --out")
    kept = [c for c in cells if cell_problem(c) is None]
    trained = {c["method"] for c in kept if c["method"] != RETAIN}
    now = {m: defaults_digest(m) for m in trained if m in VARIANTS}  # once per method, not per cell
    changed = sorted(
        {
            c["method"]
            for c in kept
            if c["method"] in trained and c.get("defaults") != now.get(c["method"], "")
        }
    )
    if changed:
        raise SiuError(
            f"--resume: the cells of {', '.join(changed)} in {out} were trained under other defaults than "
            "this siu's (a newer siu changed a default, or an older one did not record them); old and new "
            "cells would not be comparable: use another --out"
        )
    return kept


def run_matrix(
    model: str | Path | None,
    bench_path: str | Path,
    out: str | Path,
    methods: Sequence[str],
    concepts: Sequence[str] | None,
    steps: Sequence[int],
    seeds: int,
    retain: str | None = "auto",
    home: Path | None = None,
    overwrite: bool = False,
    training: dict[str, Any] | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    eval_options: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    resume: bool = False,
    log: Callable[..., Any] = print,
) -> list[dict[str, Any]]:
    """Unlearn and evaluate every cell; ``model=None`` pre-trains (cached) the synthetic world's model.

    ``training``: :class:`UnlearnConfig` fields for every cell (lr, batch_size, profile, ...);
    ``method_options``: per method, its own options (``npo_beta``); ``eval_options``: ``evaluate``'s
    judge and evaluation keywords (default judge: the rubric on a synthetic world, none otherwise).
    ``resume``: keep the finished cells of an earlier run into ``out`` with the same settings and run
    only the missing ones. A LoRA cell keeps its adapter (``cells/<cell>/adapter``), not a merged copy.

    Returns the cells (method, steps, seed, concept, metrics); the gold retain models, when there are
    any, add one row per concept with method ``retain`` and steps 0.
    """
    from siu.bench.load import load_benchmark
    from siu.eval.run import evaluate
    from siu.outputs import versions
    from siu.runtime import CPU
    from siu.unlearn.config import PER_RUN_FIELDS, UnlearnConfig
    from siu.unlearn.inputs import check_apart, check_out
    from siu.unlearn.run import RUN_FILE, unlearn
    from siu.world.cache import default_home

    unknown = [m for m in methods if m not in VARIANTS]
    if unknown:
        raise SiuError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if not steps or any(s < 1 for s in steps) or seeds < 1:
        raise SiuError("--steps needs positive integers and --seeds a positive count")
    if resume and overwrite:
        raise SiuError("--resume keeps the finished cells and --overwrite throws them away: choose one")
    training = dict(training or {})
    bad = set(PER_RUN_FIELDS) & set(training)
    if bad:
        raise SiuError(f"training options {', '.join(sorted(bad))} are the matrix's own axes")
    for method in methods:  # every cell's config is checked before any model is loaded
        name, options = VARIANTS[method]
        UnlearnConfig(method=name, options={**options, **(method_options or {}).get(method, {})},
                      steps=steps[0], **training).check()  # fmt: skip
    runtime = (runtime or CPU).check(training=True)
    bench_path = Path(bench_path)
    bench = load_benchmark(bench_path)
    synthetic = bench.manifest.generator is not None
    records = [bench.concept(c) for c in concepts] if concepts else list(bench.concepts)
    out = Path(out)
    home = home or default_home()
    eval_options = dict(eval_options or {})
    if eval_options.get("judge") is None:
        eval_options["judge"] = "rubric" if synthetic else None
    judge = eval_options["judge"]
    inputs = [bench_path] + ([Path(model)] if model is not None and Path(model).exists() else [])
    model_dir = Path(model) if model is not None and Path(model).exists() else None
    if resume:
        check_apart(out, inputs, model_dir)
    else:
        check_out(out, inputs, model_dir, overwrite)
    if retain not in (None, "none", "auto") and "{concept}" not in str(retain):
        raise SiuError(f"--retain must be auto, none or a path with {{concept}} in it, got {retain!r}")
    claim_output(out)  # before any work; released at the end, or at exit when the run fails
    if model is None:
        if not synthetic:
            raise SiuError("--model is needed unless the benchmark is a synthetic world (siu world build)")
        from siu.world.cache import world_model

        model = world_model(bench_path, home, log=log)
        log(f"the world's model: {model}")
    model = Path(model) if Path(model).exists() else model
    # what decides the figures: a resumed run must have the same (the device may change)
    settings = _jsonable({
        "model": str(model), "bench": str(bench_path), "training": training,
        "method_options": method_options or {},
        "eval": {k: v for k, v in eval_options.items() if k != "judge_key_env"},
    })  # fmt: skip
    cells: list[dict[str, Any]] = _resumed_cells(out, settings) if resume else []
    done = {(c["method"], c["steps"], c["seed"], c["concept"]) for c in cells}
    if resume:
        log(f"resuming {out}: {len(cells)} finished cell(s) kept")
    retains = retain_models(retain, Path(model), bench_path, synthetic, [r.slug for r in records], home, log)
    out.mkdir(parents=True, exist_ok=True)
    clean_partials(out, ".")  # the unlearned models of a killed run
    wanted = [(RETAIN, 0, 0, r.slug) for r in records if r.slug in retains]
    wanted += [(m, n, s, r.slug) for m in methods for n in steps for s in range(seeds) for r in records]
    todo = [key for key in wanted if key not in done]
    start = time.perf_counter()
    # the original model's side of each concept (its answers, attacked answers, relearning reference):
    # the same for every cell of a concept, computed by its first cell and reused by the others
    sides: dict[str, Any] = {}
    common = {"overwrite": True, "render": eval_report, "sides": sides, "runtime": runtime,
              "log": lambda *_: None, **eval_options}  # fmt: skip

    def save() -> None:
        summary = {"model": str(model), "bench": str(bench_path), "judge": judge, "seeds": seeds,
                   "retain": {k: str(v) for k, v in retains.items()}, "settings": settings,
                   "runtime": runtime.record(), "cells": cells, "versions": versions()}  # fmt: skip
        (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")

    for k, (method, n_steps, seed, slug) in enumerate(todo):
        record = bench.concept(slug)
        what = "gold retain model" if method == RETAIN else f"{method}, {n_steps} steps, seed {seed}"
        log(f"[{k + 1}/{len(todo)}] {what}: {record.name} ({time.perf_counter() - start:.0f} s)")
        where = out / "cells" / cell_name(method, n_steps, seed, slug)
        if method == RETAIN:
            result = evaluate(retains[slug], model, bench_path, slug, where, other_tokenizer=True, **common)
            cells.append({"method": RETAIN, "steps": 0, "seed": 0, "concept": slug,
                          "metrics": result["metrics"], "original_values": result["original_values"],
                          "train_seconds": None})  # fmt: skip
            save()
            continue
        # named like siu's other partial outputs, so that a killed run's model is cleaned up
        with tempfile.TemporaryDirectory(prefix=f".{PARTIAL}-{os.getpid()}-", dir=out) as tmp:
            name, options = VARIANTS[method]
            options = {**options, **(method_options or {}).get(method, {})}
            cfg = UnlearnConfig(method=name, options=options, steps=n_steps, seed=seed, **training)
            unlearned = Path(tmp) / "model"
            run = unlearn(model, slug, None, bench_path, cfg, unlearned, adapter_only=None, progress=False,
                          runtime=runtime, log=lambda *_: None)  # fmt: skip
            result = evaluate(unlearned, model, bench_path, slug, where, run=run, **common)
            # the cell keeps its training record (config, data, losses) and its adapter (small); a
            # fully fine-tuned model is not kept (a copy of the whole model per cell)
            (where / RUN_FILE).write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")
            if run["saved"] == "adapter":
                os.replace(unlearned, where / "adapter")
        cells.append({"method": method, "steps": n_steps, "seed": seed, "concept": slug,
                      "metrics": result["metrics"], "original_values": result["original_values"],
                      "train_seconds": run["train_seconds"], "steps_taken": run["steps_taken"],
                      "defaults": defaults_digest(method)})  # fmt: skip
        save()
    if not todo:
        log("every cell was already finished")
        save()
    table = write_summaries(out)
    log(table)
    log(f"wrote {out}/results.json and cells/*/ ({time.perf_counter() - start:.0f} s)")
    release_output(out)
    return cells


SIDE_KEYS = ("original", "original_values", "missing")


def cell_problem(cell: Any) -> str | None:
    """What makes a results.json cell unusable (None: it is fine)."""
    if not isinstance(cell, dict):
        return "not an object"
    fields = (("method", str, "a string"), ("steps", int, "a whole number"), ("seed", int, "a whole number"),
              ("concept", str, "a string"), ("metrics", dict, "an object"))  # fmt: skip
    for key, kind, what in fields:
        if not isinstance(cell.get(key), kind):
            return f"{key} is missing or not {what}"
    # eval may keep the original's values and the missing reasons beside the numbers
    bad = [k for k, v in cell["metrics"].items()
           if v is not None and not isinstance(v, int | float) and not (k in SIDE_KEYS and isinstance(v, dict))]  # fmt: skip
    return f"metrics {', '.join(bad)} not numbers" if bad else None


def write_summaries(out: Path, log: Callable[..., Any] = print) -> str:
    """(Re)write results.md, report.html (with figures/) and results.csv from results.json (also after
    an interrupted run).

    A damaged cell (a field missing or of the wrong type) is left out and named; the rest is drawn.
    """
    try:
        results = json.loads((out / "results.json").read_text())
        cells = results["cells"]
        if not isinstance(cells, list):
            raise ValueError("cells is not a list")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SiuError(f"{out}: no readable results.json from siu bench run ({err})") from err
    for i, cell in enumerate(cells):
        problem = cell_problem(cell)
        if problem:
            name = cell.get("method", "?") if isinstance(cell, dict) else "?"
            log(f"warning: {out}/results.json cells[{i}] ({name}): {problem}; left out of the summaries")
    cells = [c for c in cells if cell_problem(c) is None]
    if not cells:
        raise SiuError(f"{out}/results.json holds no usable finished cells")
    seeds = len({c["seed"] for c in cells if c["method"] != RETAIN}) or 1
    concepts = len({c["concept"] for c in cells})
    retain_note = "; `retain` = the gold retain models (never saw the concept's pictures)"
    directions = "↑ higher is better, ↓ lower is better; readable names and figures: report.html"
    table = markdown_table(cells)
    (out / "results.md").write_text(
        f"Means ± std over {seeds} seed(s) x {concepts} concept(s); G-Eval judge: "
        f"{results.get('judge') or 'none'}{retain_note if results.get('retain') else ''}; {directions}.\n\n"
        f"{table}\n"
    )
    write_bench_report(out, cells, results)
    log(f"wrote {out}/results.md, report.html, results.csv (one row per cell) and figures/ (PNG, PDF, SVG)")
    return table
