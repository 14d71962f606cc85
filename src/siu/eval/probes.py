"""The questions of one concept's evaluation (SIU.md section 7), built from the benchmark alone: no
model is needed to build them, and every model evaluated on the concept answers the same ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from siu.bench.load import Benchmark
from siu.bench.schema import Concept
from siu.eval.attacks import PERTURBATIONS, relearn_samples
from siu.eval.butterfly import ButterflyProbes, butterfly_probes
from siu.models.adapter import Sample

MEMBER_TEXT = "This is {}."  # the answer whose likelihood on C's pictures the AUC attacks score

Probe = tuple[Sample, str | None, list[str]]  # (sample, image file, targets)


@dataclass
class EvalConfig:
    test_images: int | None = None  # held-out images of C used; None: all of them (as the paper)
    other_images: int = 8  # recognition questions per other concept (specificity)
    batch_size: int = 32
    # long enough that few answers hit it (a late mention of C would be missed); the share of answers
    # cut at the limit is reported as answers_at_limit
    max_new_tokens: int = 48
    # the other concepts forgotten with C (a forget set, ``siu eval --concept A,B,C``): specificity is
    # about the concepts kept, the MIA's non-member answers name a kept concept, and the butterfly
    # effect asks for kept partners only
    forgotten: tuple[str, ...] = ()


@dataclass
class Probes:
    """Every question of one concept's evaluation, built from the benchmark alone (no model)."""

    efficacy: list[Probe]
    generality: list[Probe]
    heldout: list[bool]  # per generality probe: its phrasing is one the training never saw
    named: list[int]  # generality probes that ask for a name (not yes/no)
    facts: list[Probe]
    multilingual: list[Probe]
    multihop: list[Probe]
    attacked: list[tuple[str, Probe]]
    c_dis_prompt: str
    c_dis_images: list[str]
    c_dis: list[Sample]
    members: list[Sample]
    controls: list[Sample]
    specificity: list[tuple[str, Probe]]
    relearn: list[Sample]
    butterfly: ButterflyProbes = field(default_factory=ButterflyProbes)

    @property
    def name_probes(self) -> list[Probe]:
        return [self.generality[i] for i in self.named]


def build_probes(bench: Benchmark, concept: Concept, cfg: EvalConfig) -> Probes:
    forget = concept.forget_image
    forget_image = bench.load_image(concept, forget)
    tests = concept.test_images
    if not tests:
        raise ValueError(f"concept {concept.name!r} has no test images")
    n_tests = len(tests) if cfg.test_images is None else min(cfg.test_images, len(tests))
    images = [(r.file, bench.load_image(concept, r)) for r in tests[:n_tests]]
    prompts = concept.recognition_prompts
    efficacy = [(Sample(p.prompt, image=forget_image), forget.file, p.targets) for p in prompts]
    # prompts cycled over the test images: every image and every prompt at least once
    n = max(len(prompts), n_tests)
    generality = [
        (Sample(prompts[k % len(prompts)].prompt, image=images[k % n_tests][1]), images[k % n_tests][0],
         prompts[k % len(prompts)].targets)
        for k in range(n)
    ]  # fmt: skip
    heldout = [prompts[k % len(prompts)].heldout for k in range(n)]
    named = [k for k, p in enumerate(generality) if any(t.strip().lower() != "yes" for t in p[2])]
    name_prompt = next((p for p in prompts if any(t.strip().lower() != "yes" for t in p.targets)), prompts[0])
    facts: list[Probe] = [(Sample(q.question), None, q.answers) for q in concept.fact_questions]
    multilingual = [
        (Sample(p.prompt, image=images[k % n_tests][1]), images[k % n_tests][0], p.targets)
        for k, p in enumerate(concept.multilingual_prompts)
    ]
    multihop = [
        (Sample(q.question, image=images[k % n_tests][1]), images[k % n_tests][0], q.answers)
        for k, q in enumerate(concept.multihop)
    ]
    attacked = [
        (kind, (Sample(generality[i][0].prompt, image=perturb(generality[i][0].image)),
                f"{generality[i][1]} ({kind})", generality[i][2]))
        for kind, perturb in PERTURBATIONS.items()
        for i in named
    ]  # fmt: skip
    # Members: C's own held-out pictures with the answer naming C; non-members: the same pictures and
    # question with the answer naming another concept (one of each per name question). A model that
    # still ties C's pictures to C's name separates them (AUC near 1); one that never saw C's pictures
    # (the retain model) knows every name but has nothing to tie them to (near 0.5). The names differ
    # in length and pieces, so zlib's normalisation and Min-K%'s token choice make each score its own.
    kept = [c for c in bench.concepts if c.slug != concept.slug and c.slug not in cfg.forgotten]
    others = kept or [c for c in bench.concepts if c.slug != concept.slug]
    members, controls = [], []
    for k, i in enumerate(named):
        sample = generality[i][0]
        members.append(Sample(sample.prompt, MEMBER_TEXT.format(concept.name), sample.image))
        controls.append(Sample(sample.prompt, MEMBER_TEXT.format(others[k % len(others)].name), sample.image))
    specificity: list[tuple[str, Probe]] = []
    for other in kept:
        for k, record in enumerate(other.test_images[: cfg.other_images]):
            p = other.recognition_prompts[k % len(other.recognition_prompts)]
            image = bench.load_image(other, record)
            specificity.append(("recognition", (Sample(p.prompt, image=image), record.file, p.targets)))
        specificity += [("facts", (Sample(q.question), None, q.answers)) for q in other.fact_questions]
    for item in bench.specificity:
        image = bench.load_specificity_image(item)
        specificity.append(("vqa", (Sample(item.question, image=image), item.image, item.answers)))
    return Probes(
        efficacy=efficacy,
        generality=generality,
        heldout=heldout,
        named=named,
        facts=facts,
        multilingual=multilingual,
        multihop=multihop,
        attacked=attacked,
        c_dis_prompt=name_prompt.prompt,
        c_dis_images=[f for f, _ in images],
        c_dis=[Sample(name_prompt.prompt, image=im) for _, im in images],
        members=members,
        controls=controls,
        specificity=specificity,
        relearn=relearn_samples(concept, bench),
        butterfly=butterfly_probes(bench, concept, cfg.forgotten),
    )
