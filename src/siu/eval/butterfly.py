"""The butterfly effect (SIU.md; the paper's Melania Trump beside a forgotten Donald Trump): after
forgetting C, is a partner B still named in a picture of C and B side by side, and alone?

Built from the benchmark's pair pictures (``pairs.json``): every picture that shows C beside a kept
concept B asks for B with the picture's own question for B. The same question is asked on as many of
B's own held-out pictures ("alone"), so the two shares differ only by C standing beside B. The same
pair pictures also ask for C: forgetting should hold when C is not alone either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from siu.bench.load import Benchmark
from siu.bench.match import mentions
from siu.bench.schema import Concept
from siu.models.adapter import Sample

Probe = tuple[Sample, str | None, list[str]]  # (sample, image file, targets), as in siu.eval.probes


@dataclass
class ButterflyProbes:
    """One concept's pair questions; ``partners[k]`` is the partner asked in ``in_pair[k]`` and ``alone[k]``."""

    in_pair: list[Probe] = field(default_factory=list)
    alone: list[Probe] = field(default_factory=list)
    partners: list[str] = field(default_factory=list)
    forgotten_in_pair: list[Probe] = field(default_factory=list)  # the same pictures, asking for C

    @property
    def samples(self) -> list[Sample]:
        """Every question, in the order :func:`butterfly_figures` reads the answers."""
        return [p[0] for p in (*self.in_pair, *self.alone, *self.forgotten_in_pair)]


def butterfly_probes(bench: Benchmark, concept: Concept, forgotten: Sequence[str] = ()) -> ButterflyProbes:
    """The pair pictures of ``concept`` with a partner that is kept (not in ``forgotten``)."""
    out = ButterflyProbes()
    used: dict[str, int] = {}  # partner -> how many of its own pictures the "alone" side took
    by_slug = {c.slug: c for c in bench.concepts}
    for item in bench.pairs:
        if concept.slug not in item.concepts:
            continue
        here = item.concepts.index(concept.slug)
        partner = by_slug[item.concepts[1 - here]]
        if partner.slug in forgotten:
            continue
        tests = partner.test_images
        if not tests:
            continue
        image = bench.load_pair_image(item)
        question = item.prompts[1 - here]
        own = tests[used.get(partner.slug, 0) % len(tests)]
        used[partner.slug] = used.get(partner.slug, 0) + 1
        out.in_pair.append((Sample(question, image=image), item.image, partner.names))
        out.alone.append((Sample(question, image=bench.load_image(partner, own)), own.file, partner.names))
        out.partners.append(partner.slug)
        out.forgotten_in_pair.append((Sample(item.prompts[here], image=image), item.image, concept.names))
    return out


def _share(hits: Sequence[bool]) -> float:
    return sum(hits) / len(hits) if hits else float("nan")


def butterfly_figures(
    probes: ButterflyProbes,
    answers: Sequence[str],
    record: Callable[[str, Probe, str, bool], None] = lambda *_: None,
) -> dict[str, Any]:
    """Shares of answers naming the partner (beside C, alone) and naming C, from the answers to
    :attr:`ButterflyProbes.samples`; ``record(metric, probe, answer, hit)`` is called for each."""
    n = len(probes.in_pair)
    groups = {
        "butterfly_pair": (probes.in_pair, answers[:n]),
        "butterfly_alone": (probes.alone, answers[n : 2 * n]),
        "butterfly_forgotten_in_pair": (probes.forgotten_in_pair, answers[2 * n : 3 * n]),
    }
    out: dict[str, Any] = {"pictures": n}
    hits_of: dict[str, list[bool]] = {}
    for metric, (group, said) in groups.items():
        hits = []
        for probe, answer in zip(group, said, strict=True):
            hit = mentions(answer, probe[2])
            record(metric, probe, answer, hit)
            hits.append(hit)
        hits_of[metric] = hits
        out[metric.removeprefix("butterfly_")] = _share(hits)
    out["partners"] = {
        slug: {
            "pictures": sum(p == slug for p in probes.partners),
            "pair": _share(
                [h for p, h in zip(probes.partners, hits_of["butterfly_pair"], strict=True) if p == slug]
            ),
            "alone": _share(
                [h for p, h in zip(probes.partners, hits_of["butterfly_alone"], strict=True) if p == slug]
            ),
        }
        for slug in dict.fromkeys(probes.partners)
    }
    return out
