"""The science figures the suite asserts on the micro world, and their bounds, in one place.

A micro model's weights depend on the processor it is trained on (the order of float reductions),
so CI on another machine tests another *instance* of the same micro world. Every figure a test
asserts is computed here, by the same code for the tests and for ``scripts/instance_spread.py``,
which trains several instances (pre-training seeds) and prints each figure's spread next to its
bound. A bound belongs here only if it holds, with margin, on every instance tried.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siu.bench.load import Benchmark, load_benchmark
from siu.bench.match import mentions
from siu.cli import main
from siu.eval.forgetting import concept_scores, recognition_probes
from siu.models.adapter import VLM, Sample
from siu.unlearn.run import UnlearnConfig, unlearn
from siu.world.gates import RETAIN_THRESHOLD, THRESHOLDS

CONCEPT = "tesquo-velrix"  # the micro world's cartoon character: every science test forgets it
HELD_OUT_IMAGES = 8  # recognition questions per concept on held-out pictures

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, ">": operator.gt, "<=": operator.le}


@dataclass(frozen=True)
class Bound:
    op: str
    threshold: float
    test: str  # the test that asserts it ("" for a goal that is only reported)
    why: str


def _gates(test: str) -> dict[str, Bound]:
    return {
        f"gates.{k}": Bound(op, t, test, "pre-training gate (the product's own)")
        for k, (op, t) in THRESHOLDS.items()
    }


BOUNDS: dict[str, Bound] = {
    **_gates("test_pretrain_micro"),
    "retain.forgotten_recognition": Bound(
        "<=", RETAIN_THRESHOLD, "test_pretrain_micro", "never saw C's pictures"
    ),
    "retain.recognition": Bound(">=", 0.95 * 0.95, "test_pretrain_micro", "the others stay recognised"),
    "retain.facts": Bound(">=", 0.9, "test_pretrain_micro", "C's text facts were kept"),
    # SIU with the defaults on C. The unlearning issue's goals (GOALS below) do not hold on every micro
    # instance: the profile, tuned on the default world's model, overshoots on most of them (another of
    # the three other concepts drops to 0.4-0.5) and under-forgets on some (the one-recipe issue). What
    # holds on every instance: C forgotten on its held-out pictures at least by half, its facts kept,
    # and the forgetting selective (the others keep far more than C).
    "siu.recognition_before": Bound(">=", 0.9, "test_unlearn_run", "the original recognised C"),
    "siu.forget_recognition": Bound("<=", 0.5, "test_unlearn_run", "C on held-out pictures, at least halved"),
    "siu.facts": Bound(">=", 0.9, "test_unlearn_run", "C's text facts kept"),
    "siu.selectivity": Bound(">=", 0.4, "test_unlearn_run", "others' kept share minus C's kept share"),
    # siu eval of the original against itself
    "self.efficacy_em": Bound("<=", 50, "test_eval_run", "the original names C on the forget image"),
    "self.generality_em": Bound("<=", 20, "test_eval_run", "and on its test images"),
    "self.g_eval": Bound(">=", 3.5, "test_eval_run", "the rubric judge agrees"),
    "self.fact_retention": Bound(">=", 0.9, "test_eval_run", ""),
    "self.jailbreak_multilingual": Bound(">=", 0.8, "test_eval_run", ""),
    "self.mia_auc_loss": Bound(">=", 0.7, "test_eval_run", "C's pictures tell themselves from others'"),
    "self.attack_unseen_phrasing": Bound(">=", 0.5, "test_eval_run", "unseen phrasings, on most pictures"),
    "self.attack_quant8": Bound(">=", 0.8, "test_eval_run", "8-bit rounding keeps C"),
    # siu eval of 20 steps of gradient ascent
    "ga.generality_em": Bound(">=", 80, "test_eval_run", "GA forgets"),
    "ga.c_dis": Bound(">", 0.0, "test_eval_run", "moves away from the original"),
    "ga.fluency_ppl": Bound(">", 1.5, "test_eval_run", "by breaking the model"),
    # siu bench run cells (8 steps) and the gold retain model's row
    "bench.retain_generality_em": Bound(">=", 90, "test_bench_run", ""),
    "bench.retain_specificity": Bound(">=", 90, "test_bench_run", ""),
    "bench.retain_fact_retention": Bound(">=", 0.9, "test_bench_run", ""),
    "bench.retain_c_dis": Bound(">", 0, "test_bench_run", ""),
    "bench.siu_specificity": Bound(">=", 85, "test_bench_run", "SIU at 8 steps keeps the others"),
    "bench.siu_fact_retention": Bound(">=", 0.9, "test_bench_run", "and the facts"),
    "bench.siu_minus_ga_specificity": Bound(">", 0, "test_bench_run", "GA loses the others"),
    "bench.siu_minus_ga_fact_retention": Bound(">=", 0, "test_bench_run", ""),
}


# Reported by scripts/instance_spread.py beside the bounds, not asserted: the goals of the unlearning
# issue for SIU with the defaults, and what the original's MIA AUC has over the retain model's.
GOALS: dict[str, Bound] = {
    "siu.forget_image": Bound("<=", 0.05, "", "every name question on the forget image"),
    "siu.forget_recognition": Bound("<=", 0.05, "", "C on held-out pictures (the issue's goal)"),
    "siu.others_relative": Bound(">=", 0.95, "", "the others' recognition / the original's"),
    "siu.worst_other_change": Bound(">=", -0.2, "", "no other concept hit hard"),
    "siu.steps": Bound("<=", 10, "", "steps the rule took (the issue's goal is the mean over a world)"),
    "bench.original_minus_retain_mia_auc": Bound(">", 0, "", "MIA separates less than with the original"),
}


def holds(name: str, value: float | None, bounds: dict[str, Bound] | None = None) -> bool:
    bound = (bounds or BOUNDS)[name]
    return value is not None and _OPS[bound.op](value, bound.threshold)


def check(figures: dict[str, Any], prefix: str) -> None:
    """Assert every bound whose figure starts with ``prefix``, naming all that miss at once."""
    names = [n for n in BOUNDS if n.startswith(prefix)]
    assert names, f"no bounds start with {prefix!r}"
    missed = [
        f"{n} = {figures.get(n)} (bound {BOUNDS[n].op} {BOUNDS[n].threshold})"
        for n in names
        if not holds(n, figures.get(n))
    ]
    assert not missed, "; ".join(missed)


def quiet(*_: Any, **__: Any) -> None:
    pass


def second_concept(world: Path) -> str:
    """Another concept of the micro world than CONCEPT (its folder name), for runs on two concepts."""
    bench = load_benchmark(world)
    return next(c.slug for c in bench.concepts if c.name != bench.concept(CONCEPT).name)


# ----------------------------------------------------------------------------- the figures
def gate_figures(model: Path, retain: Path | None = None) -> dict[str, float]:
    gates = json.loads((model / "gates.json").read_text())
    out = {f"gates.{k}": gates[k] for k in THRESHOLDS}
    if retain is not None:
        kept = json.loads((retain / "gates.json").read_text())
        out |= {f"retain.{k}": kept[k] for k in ("forgotten_recognition", "recognition", "facts")}
    return out


def science_run(world: Path, model: Path, out: Path, log: Callable[..., Any] = quiet) -> dict[str, Any]:
    """SIU with the defaults on C; the run record and the ``siu.*`` figures, before and after."""
    bench = load_benchmark(world)
    probes = recognition_probes(bench, HELD_OUT_IMAGES)
    before, _ = concept_scores(VLM.load(model), probes)
    run = unlearn(model, CONCEPT, None, world, UnlearnConfig(), out, log=log)
    unlearned = VLM.load(out)
    after, _ = concept_scores(unlearned, probes)
    others = [slug for slug in after if slug != CONCEPT]
    figures = {
        "siu.recognition_before": before[CONCEPT]["recognition"],
        "siu.forget_image": forget_image_recognition(unlearned, bench),
        "siu.forget_recognition": after[CONCEPT]["recognition"],
        "siu.facts": after[CONCEPT]["facts"],
        "siu.others_relative": sum(after[s]["recognition"] for s in others)
        / sum(before[s]["recognition"] for s in others),
        "siu.worst_other_change": min(after[s]["recognition"] - before[s]["recognition"] for s in others),
    }
    figures["siu.steps"] = run["steps_taken"]
    # selective: what the others keep (relative) minus what C keeps (relative); 1 = C gone, others intact
    figures["siu.selectivity"] = figures["siu.others_relative"] - (
        figures["siu.forget_recognition"] / figures["siu.recognition_before"]
    )
    return {"run": run, "figures": figures, "before": before, "after": after}


def forget_image_recognition(vlm: VLM, bench: Benchmark) -> float:
    """Share of the benchmark's name questions (never trained on) answered with C's name on the forget image."""
    concept = bench.concept(CONCEPT)
    image = bench.load_image(concept, concept.forget_image)
    samples = [Sample(p.prompt, image=image) for p in concept.recognition_prompts if p.type == "name"]
    answers = vlm.generate(samples, max_new_tokens=24)
    return sum(mentions(a, concept.names) for a in answers) / len(answers)


def evaluate(model: Path, original: Path, world: Path, out: Path, *extra: str) -> dict[str, Any]:
    """``siu eval`` of C through the CLI; metrics.json's content."""
    args = ["eval", "--model", str(model), "--original", str(original), "--bench", str(world)]
    code = main([*args, "--concept", CONCEPT, "--out", str(out), *extra])
    assert code == 0, f"siu eval exited {code}"
    return json.loads((out / "metrics.json").read_text())


def self_figures(result: dict[str, Any]) -> dict[str, float]:
    return {n: result["metrics"][n.removeprefix("self.")] for n in BOUNDS if n.startswith("self.")}


GA_STEPS = 20  # at 10 steps some instances are barely touched (generality EM 47-79, fluency 1.05)


def gradient_ascent(world: Path, model: Path, out: Path) -> Path:
    """Gradient ascent for 20 steps: forgets by wrecking the model (the paper's GA failure)."""
    cfg = UnlearnConfig(method="ga", steps=GA_STEPS, seed=0)
    unlearn(model, CONCEPT, None, world, cfg, out, progress=False, log=quiet)
    return out


def ga_figures(result: dict[str, Any]) -> dict[str, float]:
    return {n: result["metrics"][n.removeprefix("ga.")] for n in BOUNDS if n.startswith("ga.")}


def bench_figures(out: Path) -> dict[str, float]:
    """From a ``siu bench run`` over siu and ga at 8 steps (seed 0) with C's gold retain model."""
    results = json.loads((out / "results.json").read_text())
    cells = {(c["method"], c["steps"]): c["metrics"] for c in results["cells"]}
    retain, siu, ga = cells[("retain", 0)], cells[("siu", 8)], cells[("ga", 8)]
    details = json.loads((out / "cells" / f"retain-{CONCEPT}" / "metrics.json").read_text())["details"]
    return {
        "bench.retain_generality_em": retain["generality_em"],
        "bench.retain_specificity": retain["specificity"],
        "bench.retain_fact_retention": retain["fact_retention"],
        "bench.original_minus_retain_mia_auc": details["mia_auc_original"]["mia_auc_loss"]
        - retain["mia_auc_loss"],
        "bench.retain_c_dis": retain["c_dis"],
        "bench.siu_specificity": siu["specificity"],
        "bench.siu_fact_retention": siu["fact_retention"],
        "bench.siu_minus_ga_specificity": siu["specificity"] - ga["specificity"],
        "bench.siu_minus_ga_fact_retention": siu["fact_retention"] - ga["fact_retention"],
    }


def bench_args(world: Path, model: Path, home: Path, out: Path, steps: str = "2,8") -> list[str]:
    return ["bench", "run", "--model", str(model), "--bench", str(world), "--out", str(out),
            "--methods", "siu,ga", "--concepts", CONCEPT, "--steps", steps, "--seeds", "1",
            "--home", str(home)]  # fmt: skip
