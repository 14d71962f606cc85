"""Replay stopping rules offline on the trajectories ``scripts/stop_study.py`` records.

The study trains every concept with ``--stop watch`` (every step, every check recorded per question
and per kind of check view, and the held-out truth beside them); a rule's stop step and what the
acceptance would have measured there follow without training again. Choose settings on the default
world (seed 0) only: trajectories of other worlds are for checking a rule chosen beforehand.

    python scripts/stop_replay.py study.json                     # fixed budgets, oracle, the default rule
    python scripts/stop_replay.py study.json --rule patience=2 --rule kind=speckle
    python scripts/stop_replay.py study.json --rule kind=plain --rule form=noun_free --rule prompts=0
                                      # a study run with --check-prompts 11: the noun-free questions
    python scripts/stop_replay.py study-a.json study-b.json --grid 15   # the best 15 of a grid
    python scripts/stop_replay.py study-a.json study-b.json --grid 15 --max-steps 10
                                      # ... of the rules that stop after 10 steps or fewer on average
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import mean
from typing import Any

from siu.eval.forgetting import FORGET_MAX, OTHERS_MIN_RELATIVE, fell_text
from siu.unlearn.stopping import CHECK_PROMPTS

FORMS = ("all", "noun_free", "noun")  # the check's questions: every one, or those without / with {noun}


@dataclass(frozen=True)
class Rule:
    """The settings of :class:`siu.unlearn.stopping.StopRule` a replay can vary."""

    kind: str = "colour"  # check-view kind (recorded per question by the study)
    views: int = 6  # check views used: the study's first N
    named_max: float = 0.0
    lp_max: float = -2.0  # the name's first-token log-prob must be below this ...
    agg: str = "mean"  # ... on average over the questions (mean) or on every one (max)
    patience: int = 1
    also_kind: str | None = None  # a second kind of check view that must also ...
    also_named_max: float = 0.0  # ... name the concept on at most this share of its questions
    drift_budget: float | None = 0.25
    others_budget: float | None = 1.0
    others_min: float = 0.0  # stop once fewer other concepts than this share are still named (0: off)
    min_steps: int = 1  # no stop before this step (StopRule.min_steps)
    cap: int = 16
    form: str = "all"  # which of the rule's questions: FORMS
    prompts: int = 4  # the first N of them (StopRule.prompts); studies record --check-prompts of them


def _is_template(prompt: str, template: str) -> bool:
    """Whether ``prompt`` is ``template`` with its category noun filled in."""
    head, noun, tail = template.partition("{noun}")
    return prompt.startswith(head) and prompt.endswith(tail) if noun else prompt == template


@functools.cache  # a grid asks it for every recorded answer of every step, once per rule
def asked(prompt: str, form: str, n: int) -> bool:
    """Whether a rule asking the first ``n`` (0: every one) of ``CHECK_PROMPTS`` of ``form`` asks
    ``prompt``."""
    templates = [t for t in CHECK_PROMPTS if form == "all" or (("{noun}" in t) == (form == "noun"))]
    return any(_is_template(prompt, t) for t in templates[: n or None])


def own_figures(
    step: dict[str, Any], kind: str, views: int, form: str = "all", prompts: int = 0
) -> tuple[float, list[float]] | None:
    """(named, the name's first-token log-probs) on the first ``views`` check views of ``kind``, on the
    rule's first ``prompts`` questions of ``form`` (0: every one; a study that did not record which
    question each answer is to: every answer)."""
    k = step.get("kinds", {}).get(kind)
    if not k:
        return None
    questions = k.get("prompts")
    idx = [
        i
        for i, v in enumerate(k["views"])
        if v < views and (questions is None or asked(questions[i], form, prompts))
    ]
    if not idx:
        return None
    named = sum(k["named_each"][i] for i in idx) / len(idx)
    return named, [k["name_logprob_each"][i] for i in idx]


def looks_forgotten(truth: dict[str, Any], rule: Rule) -> bool | None:
    """The rule's "forgotten" at one recorded step; None when the original named it on no check view."""
    figures = own_figures(truth, rule.kind, rule.views, rule.form, rule.prompts)
    if figures is None:
        return None
    named, logps = figures
    value = mean(logps) if rule.agg == "mean" else max(logps)
    forgotten = named <= rule.named_max and value < rule.lp_max
    if rule.also_kind is not None:
        also = own_figures(truth, rule.also_kind, rule.views, rule.form, rule.prompts)
        forgotten = forgotten and also is not None and also[0] <= rule.also_named_max
    return forgotten


def stop_step(run: dict[str, Any], rule: Rule) -> tuple[int, str]:
    """The step the rule stops after, and why (as StopState.decide, replayed)."""
    since = None
    steps = min(rule.cap, len(run["truth"]))
    for t in range(1, steps + 1):
        truth, check = run["truth"][t - 1], run["checks"][t - 1]
        since = (since or t) if looks_forgotten(truth, rule) else None
        if t < rule.min_steps:
            continue
        if rule.drift_budget is not None and check.get("drift", 0.0) > rule.drift_budget:
            return t, "drift"
        if rule.others_budget is not None and check.get("others_drop", 0.0) > rule.others_budget:
            return t, "others"
        if check.get("others_named", 1.0) < rule.others_min:
            return t, "others named"
        if since is not None and t - since >= rule.patience:
            return t, "forgotten"
    return steps, "cap"


def miss_kind(run: dict[str, Any], step: int, cap: int) -> str:
    """Why a stop after ``step`` misses, against the steps (up to ``cap``) that meet all three goals:
    "early" (before the first of them), "late" (after one) or "no window" (there is none)."""
    window = [t["step"] for t in run["truth"][:cap] if t["passed"]]
    if not window:
        return "no window"
    return "early" if step < window[0] else "late"


def others_at(run: dict[str, Any], step: int) -> str | None:
    """For a stop after ``step`` that misses on the others: which of them fell on held-out pictures (the
    study's truth) beside those the rule's check saw no longer named on their own pictures (None when
    the study recorded neither, as studies before ``others_fell`` did)."""
    truth, check = run["truth"][step - 1], run["checks"][step - 1]
    if "others_fell" not in truth and "others_lost" not in check:
        return None
    fell = fell_text(truth["others_fell"]) or "none fell" if "others_fell" in truth else "not recorded"
    lost = ", ".join(check["others_lost"]) or "none" if "others_lost" in check else "not recorded"
    return f"held-out pictures: {fell}; the check saw lost: {lost}"


def replay(runs: list[dict[str, Any]], rule: Rule) -> dict[str, Any]:
    stops = [stop_step(r, rule) for r in runs]
    truths = [r["truth"][s - 1] for r, (s, _) in zip(runs, stops, strict=True)]
    return {
        "passed": sum(t["passed"] for t in truths),
        "steps": mean(s for s, _ in stops),
        "still_named": sum(t["forget_recognition"] > FORGET_MAX for t in truths),
        "others_below": sum(t["others_relative"] < OTHERS_MIN_RELATIVE for t in truths),
        "misses": [
            (
                r["concept"],
                s,
                why,
                t["forget_recognition"],
                round(t["others_relative"], 3),
                miss_kind(r, s, rule.cap),
            )
            for r, (s, why), t in zip(runs, stops, truths, strict=True)
            if not t["passed"]
        ],
    }


def grid(
    runs: list[dict[str, Any]], kinds: list[str], max_steps: float | None = None
) -> list[tuple[dict[str, Any], Rule]]:
    """Rules over the live rule's settings and two it lacks (``agg``, ``form``), best first; with
    ``max_steps`` only those whose mean stop is at most that many steps (the issue's goal: 10)."""
    rows = []
    recorded = any("prompts" in k for r in runs for k in r["truth"][0].get("kinds", {}).values())
    # the question forms only where the studies recorded which question each answer is to
    forms = [("all", 4), ("all", 6), ("all", 0), ("noun_free", 0), ("noun", 0)] if recorded else [("all", 4)]
    for kind, views, agg, lp, patience, others, named_max, (form, n) in itertools.product(
        kinds,
        (4, 6, 8),
        ("mean", "max"),
        (-1.0, -2.0, -3.0, -4.0, -6.0),
        (0, 1, 2, 3),
        (0.5, 1.0, None),
        (0.0, 0.1),
        forms,
    ):
        rule = Rule(
            kind=kind,
            views=views,
            agg=agg,
            lp_max=lp,
            patience=patience,
            others_budget=others,
            named_max=named_max,
            form=form,
            prompts=n,
        )
        result = replay(runs, rule)
        if max_steps is None or result["steps"] <= max_steps:
            rows.append((result, rule))
    rows.sort(key=lambda row: (row[0]["passed"], -row[0]["steps"], row[1].patience), reverse=True)
    return rows


def parse_rule(pairs: list[str], kinds: set[str]) -> Rule:
    """``KEY=VALUE`` settings of :class:`Rule`; kinds must be among those the studies recorded."""
    rule = Rule()
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in Rule.__dataclass_fields__:
            raise SystemExit(f"unknown rule setting {key!r}; known: {', '.join(Rule.__dataclass_fields__)}")
        current = getattr(rule, key)
        cast = type(current) if current is not None else (str if key == "also_kind" else float)
        rule = replace(rule, **{key: None if value == "none" else cast(value)})
    if rule.agg not in ("mean", "max"):
        raise SystemExit(f"agg must be mean or max, got {rule.agg!r}")
    if rule.form not in FORMS:
        raise SystemExit(f"form must be one of {', '.join(FORMS)}, got {rule.form!r}")
    for kind in (rule.kind, rule.also_kind):
        if kind is not None and kind not in kinds:
            raise SystemExit(
                f"kind {kind!r} was not recorded by these studies; recorded: {', '.join(sorted(kinds))}"
            )
    return rule


def disagreements(runs: list[dict[str, Any]]) -> int:
    """Steps where the study's own measurement of the default check (colour, 6 views) and the rule's
    record in the run disagree on "forgotten": the replay's trust in the study's figures."""
    n = 0
    for run in runs:
        for truth, check in zip(run["truth"], run["checks"], strict=False):
            forgotten = looks_forgotten(truth, Rule())
            if forgotten is not None and "forgotten" in check:
                n += forgotten != check["forgotten"]
    return n


def oracle(runs: list[dict[str, Any]], cap: int) -> int:
    """Concepts with at least one step up to ``cap`` that meets all three goals (hindsight of the
    held-out pictures: what the best stop for each concept would meet)."""
    return sum(any(t["passed"] for t in r["truth"][:cap]) for r in runs)


def per_study(studies: dict[Path, list[dict[str, Any]]], rule: Rule) -> str:
    """The rule on each study alone: met and mean steps (a rule chosen on pooled runs can win on one
    and lose on another)."""
    results = {path: replay(study, rule) for path, study in studies.items()}
    return ", ".join(
        f"{path.name} {res['passed']}/{len(studies[path])} at {res['steps']:.2f}"
        for path, res in results.items()
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("studies", nargs="+", type=Path, help="stop_study.py --json outputs (runs pooled)")
    ap.add_argument("--rule", action="append", default=[], help="KEY=VALUE of Rule (repeat)")
    ap.add_argument("--grid", type=int, default=0, help="print the best N rules of a grid")
    ap.add_argument(
        "--max-steps",
        type=float,
        default=None,
        help="the grid keeps only rules that stop after at most this many steps on average (goal: 10)",
    )
    args = ap.parse_args(argv)
    studies = {path: json.loads(path.read_text())["runs"] for path in args.studies}
    runs = [run for study in studies.values() for run in study]
    kinds = {k for r in runs for t in r["truth"] for k in t.get("kinds", {})}
    rule = parse_rule(args.rule, kinds)
    cap = rule.cap
    fixed = {
        s: sum(r["truth"][s - 1]["passed"] for r in runs if len(r["truth"]) >= s) for s in range(1, cap + 1)
    }
    print(f"{len(runs)} runs; oracle (best step per concept, cap {cap}): {oracle(runs, cap)}")
    if len(studies) > 1:
        print(
            "  per study: "
            + ", ".join(f"{path.name} {oracle(study, cap)}/{len(study)}" for path, study in studies.items())
        )
    print("fixed budgets: " + ", ".join(f"{s}: {n}" for s, n in fixed.items()))
    print(f"steps where the study's default check and the run's own record disagree: {disagreements(runs)}")
    result = replay(runs, rule)
    print(f"rule {asdict(rule)}: {result['passed']}/{len(runs)}, {result['steps']:.2f} steps")
    if len(studies) > 1:
        print("  per study: " + per_study(studies, rule))
    kinds_of_misses = Counter(miss[-1] for miss in result["misses"])
    print(
        "misses: "
        + ", ".join(f"{kinds_of_misses[k]} {k}" for k in ("early", "late", "no window"))
        + " (stopped before the concept's first passing step, after one, or it has none)"
    )
    by_concept = {r["concept"]: r for r in runs}
    for concept, step, why, forget, others, kind in result["misses"]:
        print(
            f"  miss: {concept} stopped after step {step} ({why}), forget {forget}, others {others}: {kind}"
        )
        seen = others_at(by_concept[concept], step) if others < OTHERS_MIN_RELATIVE else None
        if seen:
            print(f"    others: {seen}")
    if args.grid:
        for res, r in grid(runs, sorted(kinds), args.max_steps)[: args.grid]:
            print(
                f"{res['passed']:3d} {res['steps']:5.2f} named {res['still_named']} others {res['others_below']}  {asdict(r)}"
            )
            if len(studies) > 1:
                print("      " + per_study(studies, r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
