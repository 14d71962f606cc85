"""Did the unlearning forget the concept and keep everything else? Recognition and facts per concept.

Recognition is asked on the benchmark's held-out test images (never the forget image) with its
recognition prompts (name questions and yes/no questions, held-out paraphrases included); an answer
counts when it names the concept (case-insensitive, whole words) or says "yes" to a yes/no question.
Facts are the concept's text-only questions: SIU should leave them intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from siu.bench.load import Benchmark
from siu.bench.match import mentions
from siu.models.adapter import VLM
from siu.world.gates import Probe, build_probes

# Acceptance of one unlearning run (the unlearning issue): forgotten, others kept, facts kept.
FORGET_MAX = 0.05  # recognition of the forgotten concept on its held-out images
OTHERS_MIN_RELATIVE = 0.95  # other concepts' recognition relative to the original model's
FACTS_MIN = 0.90  # text facts about the forgotten concept still answered


def recognition_probes(bench: Benchmark, images_per_concept: int = 8) -> list[Probe]:
    """Recognition questions on held-out images and text fact questions, for every concept.

    Recognition: the concept's first ``images_per_concept`` recognition prompts, prompt k on held-out
    image k (on the synthetic world these are all "who/what is this" name questions; its yes/no
    prompts come later in the list). Facts: every text-only fact question of the concept.
    """
    return build_probes(bench, recognition_per_concept=images_per_concept, kinds=("recognition", "facts"))


def concept_scores(
    vlm: VLM, probes: Sequence[Probe], batch_size: int = 64, progress: bool = False
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Per concept: share of recognition answers that recognise it, share of fact answers right.

    Returns the scores and one record per answer, so every number can be traced to what was said.
    """
    bar = tqdm(total=len(probes), desc="evaluating", unit="answer", disable=not progress, mininterval=1.0)
    answers = vlm.generate([p.sample for p in probes], max_new_tokens=24, batch_size=batch_size, progress=bar)
    bar.close()
    records = [
        {
            "concept": p.concept,
            "kind": p.kind,
            "image": p.image,
            "prompt": p.sample.prompt,
            "answer": a,
            "targets": p.targets,
            "correct": mentions(a, p.targets),
        }
        for p, a in zip(probes, answers, strict=True)
    ]
    scores: dict[str, dict[str, float]] = {}
    for slug in dict.fromkeys(p.concept for p in probes):
        for kind in ("recognition", "facts"):
            hits = [r["correct"] for r in records if r["concept"] == slug and r["kind"] == kind]
            if hits:
                scores.setdefault(slug, {})[kind] = sum(hits) / len(hits)
    return scores, records


def forgetting_summary(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], concept: str
) -> dict[str, Any]:
    """The three acceptance figures of one run, with the original model's values beside them."""
    others = [slug for slug in before if slug != concept]
    mean_before = sum(before[s]["recognition"] for s in others) / len(others)
    mean_after = sum(after[s]["recognition"] for s in others) / len(others)
    summary = {
        "concept": concept,
        "forget_recognition": after[concept]["recognition"],
        "forget_recognition_before": before[concept]["recognition"],
        "others_recognition": mean_after,
        "others_recognition_before": mean_before,
        "others_relative": mean_after / mean_before if mean_before else float("nan"),
        "facts": after[concept].get("facts", float("nan")),
        "facts_before": before[concept].get("facts", float("nan")),
    }
    summary["passed"] = bool(
        summary["forget_recognition"] <= FORGET_MAX
        and summary["others_relative"] >= OTHERS_MIN_RELATIVE
        and summary["facts"] >= FACTS_MIN
    )
    return summary


def others_fell(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], concept: str
) -> dict[str, list[float]]:
    """The other concepts whose held-out recognition fell: ``{slug: [before, after]}``, the largest
    fall first (which ones make ``others_relative`` miss)."""
    fell = {
        slug: [before[slug]["recognition"], after[slug]["recognition"]]
        for slug in before
        if slug != concept and after[slug]["recognition"] < before[slug]["recognition"]
    }
    return dict(sorted(fell.items(), key=lambda kv: kv[1][1] - kv[1][0]))


def fell_text(fell: dict[str, list[float]]) -> str:
    """``others_fell`` as one line: ``slug before -> after, ...``."""
    return ", ".join(f"{slug} {b:.2f} -> {a:.2f}" for slug, (b, a) in fell.items())
