"""Quality gates: does the pre-trained model really know its world?

Measured on the benchmark's held-out images and all its prompts (held-out paraphrases included).
A model that does not know its concepts makes every unlearning figure meaningless, so pre-training
reports these and says plainly when a gate is missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image
from tqdm import tqdm

from siu.bench.load import Benchmark
from siu.bench.match import mentions
from siu.bench.schema import Concept
from siu.models.adapter import VLM, Sample
from siu.tables import format_table

THRESHOLDS: dict[str, tuple[str, float]] = {
    "recognition": (">=", 0.95),
    "recognition_min_concept": (">=", 0.85),
    "facts": (">=", 0.95),
    "multihop": (">=", 0.90),
    "multilingual": (">=", 0.90),
    "specificity_vqa": (">=", 0.90),
}
RETAIN_THRESHOLD = 0.05  # the retain model's recognition of its held-out concept


@dataclass
class Probe:
    concept: str
    kind: str
    sample: Sample
    targets: list[str]
    image: str | None = None
    heldout: bool = False  # phrasing never seen in pre-training


def _cycle_images(bench: Benchmark, concept: Concept, n: int) -> list[tuple[str, Image.Image]]:
    tests = concept.test_images
    return [(tests[k % len(tests)].file, bench.load_image(concept, tests[k % len(tests)])) for k in range(n)]


PROBE_KINDS = ("recognition", "multihop", "multilingual", "facts", "specificity_vqa")


def build_probes(
    bench: Benchmark, recognition_per_concept: int = 32, kinds: tuple[str, ...] = PROBE_KINDS
) -> list[Probe]:
    """Every question of the benchmark that the gates ask, on held-out images; ``kinds`` picks a subset."""
    unknown = set(kinds) - set(PROBE_KINDS)
    if unknown:
        raise ValueError(f"unknown probe kinds {sorted(unknown)}; known: {', '.join(PROBE_KINDS)}")
    probes: list[Probe] = []
    for c in bench.concepts:
        prompts = c.recognition_prompts
        n_img = max(recognition_per_concept, len(c.multihop), len(c.multilingual_prompts))
        images = _cycle_images(bench, c, min(n_img, len(c.test_images)))
        for k in range(recognition_per_concept):
            p = prompts[k % len(prompts)]
            f, img = images[k % len(images)]
            probes.append(Probe(c.slug, "recognition", Sample(p.prompt, image=img), p.targets, f, p.heldout))
        for k, q in enumerate(c.multihop):
            f, img = images[k % len(images)]
            probes.append(Probe(c.slug, "multihop", Sample(q.question, image=img), q.answers, f, q.heldout))
        for k, p in enumerate(c.multilingual_prompts):
            f, img = images[(k + 7) % len(images)]
            probes.append(Probe(c.slug, "multilingual", Sample(p.prompt, image=img), p.targets, f, p.heldout))
        for q in c.fact_questions:
            probes.append(Probe(c.slug, "facts", Sample(q.question), q.answers, heldout=q.heldout))
    for item in bench.specificity:
        img = bench.load_specificity_image(item)
        probes.append(
            Probe("", "specificity_vqa", Sample(item.question, image=img), item.answers, item.image)
        )
    return [p for p in probes if p.kind in kinds]


def measure_gates(
    vlm: VLM, bench: Benchmark, without: str | None = None, batch_size: int = 64, progress: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return the gate values (plus pass/fail) and one record per generated answer."""
    probes = build_probes(bench)
    bar = tqdm(
        total=len(probes), desc="measuring gates", unit="answer", disable=not progress, mininterval=1.0
    )
    answers = vlm.generate([p.sample for p in probes], max_new_tokens=24, batch_size=batch_size, progress=bar)
    bar.close()
    records = []
    for p, a in zip(probes, answers, strict=True):
        records.append(
            {
                "kind": p.kind,
                "concept": p.concept,
                "image": p.image,
                "prompt": p.sample.prompt,
                "heldout_phrasing": p.heldout,
                "answer": a,
                "targets": p.targets,
                "correct": mentions(a, p.targets),
            }
        )

    def frac(rs: list[dict[str, Any]]) -> float:
        return sum(r["correct"] for r in rs) / len(rs) if rs else float("nan")

    kept = [r for r in records if r["concept"] != without]
    per_concept = {
        c.slug: frac([r for r in kept if r["kind"] == "recognition" and r["concept"] == c.slug])
        for c in bench.concepts
        if c.slug != without
    }
    gates: dict[str, Any] = {
        "recognition": sum(per_concept.values()) / len(per_concept),
        "recognition_min_concept": min(per_concept.values()),
        "facts": frac([r for r in records if r["kind"] == "facts"]),
        # multi-hop is gated on held-out images with phrasings seen in pre-training; the held-out
        # phrasing (a linguistic generalisation test for a tiny model) is reported beside it
        "multihop": frac([r for r in kept if r["kind"] == "multihop" and not r["heldout_phrasing"]]),
        "multihop_unseen_phrasing": frac(
            [r for r in kept if r["kind"] == "multihop" and r["heldout_phrasing"]]
        ),
        "recognition_unseen_phrasing": frac(
            [r for r in kept if r["kind"] == "recognition" and r["heldout_phrasing"]]
        ),
        "multilingual": frac([r for r in kept if r["kind"] == "multilingual"]),
        "specificity_vqa": frac([r for r in records if r["kind"] == "specificity_vqa"]),
        "recognition_per_concept": per_concept,
    }
    failed = [k for k, (_, t) in THRESHOLDS.items() if not gates[k] >= t]
    if without is not None:
        forgotten = frac([r for r in records if r["kind"] == "recognition" and r["concept"] == without])
        gates["without"] = without
        gates["forgotten_recognition"] = forgotten
        if not forgotten <= RETAIN_THRESHOLD:
            failed.append("forgotten_recognition")
    gates["thresholds"] = {k: f"{op} {t}" for k, (op, t) in THRESHOLDS.items()}
    if without is not None:
        gates["thresholds"]["forgotten_recognition"] = f"<= {RETAIN_THRESHOLD}"
    gates["failed"] = failed
    gates["passed"] = not failed
    gates["answers"] = len(records)
    return gates, records


def gates_table(gates: dict[str, Any]) -> str:
    keys = [*THRESHOLDS, *(["forgotten_recognition"] if "forgotten_recognition" in gates else [])]
    rows = [[k, gates[k], gates["thresholds"][k], "FAIL" if k in gates["failed"] else "ok"] for k in keys]
    rows += [
        [k, gates[k], "(reported)", ""] for k in ("recognition_unseen_phrasing", "multihop_unseen_phrasing")
    ]
    return format_table(["gate", "value", "needs", "status"], rows)
