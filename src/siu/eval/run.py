"""Evaluate one unlearned concept and write metrics.json, answers.jsonl and report.html atomically."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siu.errors import SiuError

if TYPE_CHECKING:
    from siu.runtime import Runtime


def _fmt(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def metrics_table(metrics: dict[str, Any]) -> str:
    """Every metric with the original model's value beside it, its direction and what it measures."""
    from siu.eval.metrics import METRICS
    from siu.tables import format_table

    original = metrics.get("original_values", {})
    rows = []
    for key, (better, what) in METRICS.items():
        note = metrics.get("missing", {}).get(key, what)
        rows.append([key, _fmt(metrics.get(key)), _fmt(original.get(key)), better, note])
    references = {
        "mia_auc_retain": ("mia_auc_", "the retain model's AUCs (the gold standard: ~0.5)"),
    }
    for key, (prefix, what) in references.items():
        if isinstance(metrics.get(key), dict):
            values = ", ".join(f"{k.removeprefix(prefix)} {v:.3f}" for k, v in metrics[key].items())
            rows.append([key, values, "", "", what])
        elif key in metrics.get("missing", {}):
            rows.append([key, "missing", "", "", metrics["missing"][key]])
    table = format_table(["metric", "value", "original", "better", "what"], rows)
    warnings = "".join(f"\nwarning: {w}" for w in metrics.get("warnings", []))
    return table + warnings


IGNORED_PROCESSOR_KEYS = ("processor_class", "image_processor_type", "_processor_class")


def processor_differences(a: Any, b: Any) -> list[str]:
    """The image-processor settings in which two loaded models differ (``image_mean: [..] vs [..]``)."""
    left, right = a.processor.image_processor.to_dict(), b.processor.image_processor.to_dict()
    keys = sorted((set(left) | set(right)) - set(IGNORED_PROCESSOR_KEYS))
    return [f"{k}: {left.get(k)!r} vs {right.get(k)!r}" for k in keys if left.get(k) != right.get(k)]


def evaluate(
    model: str | Path,
    original: str | Path,
    bench_path: str | Path,
    concept_name: str | Sequence[str],
    out: str | Path,
    judge: str | None = None,
    judge_model: str | None = None,
    judge_url: str | None = None,
    judge_key_env: str = "OPENAI_API_KEY",
    retain: str | Path | None = None,
    test_images: int | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 48,
    trust_remote_code: bool = False,
    overwrite: bool = False,
    run: dict[str, Any] | None = None,
    other_tokenizer: bool = False,
    sides: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    base: str | Path | None = None,
    render: Callable[[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None], str] | None = None,
    log: Callable[..., Any] = print,
) -> dict[str, Any]:
    """Every metric of ``concept_name`` for ``model`` against ``original``; returns metrics.json's content.

    Inputs are checked (benchmark, concept, output directory, judge and its key) before any model is
    loaded; nothing is written unless every metric was computed. ``run`` (an unlearning run record)
    adds a line about the training to the HTML report, which ``render`` (the report layer's
    ``eval_report``; None: no report.html) draws from the result and the answers. ``other_tokenizer``
    lets ``model`` have its own tokenizer (C-Dis and fluency are then reported missing). ``sides``
    keeps the original model's side of each concept between calls (``siu bench run`` passes one dict
    for all its cells, so the original's answers are computed once per concept). ``runtime``: where
    the models (and an ``hf`` judge) run and in what dtype; default the CPU in float32. ``model`` may
    be a LoRA adapter directory (``siu unlearn --adapter-only``): it is merged into its base (``base``,
    or the model the adapter names) in memory.

    ``concept_name`` may be a forget set (several concepts a joint or sequential run forgot): each is
    evaluated with the others of the set left out of its specificity, into ``out/<concept>/``, and
    ``out/forget-set.json`` holds every metric per concept and their mean (the returned content).
    """
    from siu.bench.load import load_benchmark
    from siu.eval.judges import make_judge
    from siu.eval.probes import EvalConfig
    from siu.models.adapter import VLM
    from siu.models.files import adapter_chain, is_adapter_dir
    from siu.outputs import write_atomically
    from siu.unlearn.inputs import check_out
    from siu.unlearn.run import check_finite_weights

    start = time.perf_counter()
    out = Path(out)
    if (test_images is not None and test_images < 1) or batch_size < 1 or max_new_tokens < 1:
        raise SiuError("--test-images, --batch-size and --max-new-tokens must be positive")
    bench = load_benchmark(bench_path)
    names = [concept_name] if isinstance(concept_name, str) else list(concept_name)
    concepts = [bench.concept(name) for name in names]
    if not concepts:
        raise SiuError("no concept to evaluate")
    if len({c.slug for c in concepts}) < len(concepts):
        raise SiuError(f"a concept is named twice: {', '.join(names)}")
    inputs = [Path(bench_path)] + [Path(p) for p in (model, original, retain, base) if p and Path(p).exists()]
    if is_adapter_dir(model):  # the adapters and the model it is merged into are inputs too
        inputs += [Path(p) for p in adapter_chain(Path(model), base) if Path(p).exists()]
    check_out(out, inputs, None, overwrite)
    judge_obj = None
    if judge is not None:  # before any model is loaded: a missing key costs nothing
        judge_obj = make_judge(
            judge,
            others=bench.concepts,
            synthetic=bench.manifest.generator is not None,
            model=judge_model,
            url=judge_url,
            key_env=judge_key_env,
            trust_remote_code=trust_remote_code,
            runtime=runtime,
        )
    unlearned = VLM.load(model, runtime, trust_remote_code=trust_remote_code, base=base)
    base_vlm = VLM.load(original, runtime, trust_remote_code=trust_remote_code)
    retained = VLM.load(retain, runtime, trust_remote_code=trust_remote_code) if retain else None
    for path, vlm in ((model, unlearned), (original, base_vlm), (retain, retained)):
        if vlm is not None:  # before any metric: a NaN model would fail deep in the relearning attack
            check_finite_weights(vlm.model, f"the model at {path}", "nothing was evaluated")
    # C-Dis and fluency compare token probabilities across the two models; the retain model is only
    # scored on its own (its AUCs), so its tokenizer may differ (the world's retain model trains its own)
    if base_vlm.tokenizer.get_vocab() != unlearned.tokenizer.get_vocab() and not other_tokenizer:
        raise SiuError(
            "--original has a different tokenizer than --model; they must be the same model family"
        )
    differ = processor_differences(unlearned, base_vlm)
    if differ:  # other pixels in, other answers out: every comparison with the original would be off
        raise SiuError(f"--model and --original preprocess images differently ({'; '.join(differ)})")
    results = []
    for concept in concepts:
        forgotten = tuple(c.slug for c in concepts if c.slug != concept.slug)
        cfg = EvalConfig(
            test_images=test_images, batch_size=batch_size, max_new_tokens=max_new_tokens, forgotten=forgotten
        )
        log(f"evaluating {concept.name!r}: {model} against {original}")
        result, records, metrics = _evaluate_one(
            unlearned, base_vlm, retained, bench, str(bench_path), concept, cfg, judge_obj, sides, runtime,
            {"model": str(model), "original": str(original), "retain": str(retain) if retain else None},
            log,
        )  # fmt: skip
        results.append((concept, result, records))
        if len(concepts) == 1:
            shown = metrics_table(metrics)
    single = len(concepts) == 1
    summary = forget_set_summary([r for _, r, _ in results]) if not single else results[0][1]
    summary["seconds"] = time.perf_counter() - start  # with the models' loading

    def write_one(folder: Path, result: dict[str, Any], records: list[dict[str, Any]]) -> None:
        folder.mkdir(exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        with open(folder / "answers.jsonl", "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        if render is not None:
            (folder / "report.html").write_text(render(result, records, run), encoding="utf-8")

    def write(tmp: Path) -> None:
        if single:
            write_one(tmp, results[0][1], results[0][2])
            return
        for concept, result, records in results:
            write_one(tmp / concept.slug, result, records)
        (tmp / FORGET_SET_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")

    write_atomically(out, write, overwrite=overwrite)
    if single:
        result, records = results[0][1], results[0][2]
        log(shown)
        log(
            f"wrote {out}/metrics.json, answers.jsonl ({len(records)} answers)"
            f"{' and report.html' if render else ''} in {result['seconds']:.0f} s"
        )
    else:
        log(forget_set_table(summary))
        log(
            f"wrote {out}/{FORGET_SET_FILE} and, per concept, {out}/<concept>/metrics.json, answers.jsonl"
            f"{' and report.html' if render else ''} in {summary['seconds']:.0f} s"
        )
    return summary


FORGET_SET_FILE = "forget-set.json"


def _evaluate_one(
    unlearned: Any,
    base: Any,
    retained: Any,
    bench: Any,
    bench_path: str,
    concept: Any,
    cfg: Any,
    judge_obj: Any,
    sides: dict[str, Any] | None,
    runtime: Runtime | None,
    paths: dict[str, str | None],
    log: Callable[..., Any],
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """One concept's metrics.json content, its answers and the metrics as computed, from loaded models."""
    from siu.eval.metrics import METRICS, evaluate_concept, original_side, side_key
    from siu.outputs import versions
    from siu.runtime import CPU

    start = time.perf_counter()

    def step(what: str) -> None:
        log(f"  {what} ({time.perf_counter() - start:.0f} s)")

    side = None
    if sides is not None:
        key = f"{bench_path}|{side_key(concept, cfg, judge_obj, base)}"
        if key not in sides:
            sides[key] = original_side(base, bench, concept, cfg, judge_obj, step=step)
        side = sides[key]
    metrics, records = evaluate_concept(
        unlearned, base, bench, concept, cfg, judge=judge_obj, retain=retained, step=step, side=side
    )
    result = {
        "concept": {"name": concept.name, "slug": concept.slug},
        **paths,
        "bench": bench_path,
        "judge": judge_obj.name if judge_obj else None,
        "metrics": {k: metrics.get(k) for k in METRICS},
        "original_values": metrics["original_values"],
        "original_recognises": metrics["original_recognises"],
        "warnings": metrics["warnings"],
        "eval_config": asdict(cfg),
        "runtime": (runtime or CPU).record(),
        "directions": {k: {"better": b, "what": w} for k, (b, w) in METRICS.items()},
        "details": {
            k: v
            for k, v in metrics.items()
            if k not in METRICS and k not in ("original_values", "original_recognises", "warnings")
        },
        "seconds": time.perf_counter() - start,
        "versions": versions(),
    }
    return result, records, metrics


def forget_set_summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every metric per concept of a forget set and its mean over the concepts that have it."""
    from siu.eval.metrics import METRICS

    per = {r["concept"]["slug"]: r["metrics"] for r in results}
    mean: dict[str, float | None] = {}
    for key in METRICS:
        values = [float(m[key]) for m in per.values() if isinstance(m.get(key), (int, float))]
        values = [v for v in values if not math.isnan(v)]
        mean[key] = sum(values) / len(values) if values else None
    return {
        "concepts": [r["concept"] for r in results],
        "model": results[0]["model"],
        "original": results[0]["original"],
        "bench": results[0]["bench"],
        "metrics": per,
        "mean": mean,
        "original_values": {r["concept"]["slug"]: r["original_values"] for r in results},
        "note": "specificity of each concept is measured on the concepts not in the forget set",
        "directions": results[0]["directions"],
        "versions": results[0]["versions"],
    }


def forget_set_table(summary: dict[str, Any]) -> str:
    """Metrics as rows, each forgotten concept and the mean as columns."""
    from siu.eval.metrics import METRICS
    from siu.tables import format_table

    slugs = [c["slug"] for c in summary["concepts"]]
    rows = [
        [key, *(_fmt(summary["metrics"][s].get(key)) for s in slugs), _fmt(summary["mean"][key]), better]
        for key, (better, _) in METRICS.items()
    ]
    return format_table(["metric", *slugs, "mean", "better"], rows) + f"\n{summary['note']}"
