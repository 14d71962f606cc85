"""Concepts of the synthetic world, all derived from one seed."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from siu.bench.schema import CATEGORIES
from siu.world.render import COLOURS, VARIANTS, Look
from siu.world.text import FACT_SLOTS, SYLLABLES


@dataclass(frozen=True)
class WorldConcept:
    slug: str
    name: str
    aliases: tuple[str, ...]
    look: Look
    facts: tuple[tuple[str, str], ...]  # (slot key, value)

    @property
    def category(self) -> str:
        return self.look.category

    def fact(self, key: str) -> str:
        return dict(self.facts)[key]


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.sample(SYLLABLES, n)).capitalize()


def make_names(rng: random.Random, n: int) -> list[tuple[str, tuple[str, ...]]]:
    """Made-up two-word names with a surname alias and a short nickname alias, all distinct."""
    used: set[str] = set()
    out: list[tuple[str, tuple[str, ...]]] = []
    while len(out) < n:
        first, last = _word(rng, 2), _word(rng, rng.choice((2, 3)))
        nick = (first[:2] + last[:2].lower() + "o").capitalize()
        words = {first.lower(), last.lower(), nick.lower()}
        if len(words) < 3 or words & used or len(first) < 4 or len(last) < 4:
            continue
        # no word may be a prefix of another, so word-boundary matching never confuses two concepts
        if any(a.startswith(b) or b.startswith(a) for a in words for b in used):
            continue
        used |= words
        out.append((f"{first} {last}", (last, nick)))
    return out


def make_concepts(seed: int, n: int) -> list[WorldConcept]:
    """``n`` concepts spread over MMUBench's categories, each with a unique colour pair."""
    if not 4 <= n <= 28:
        raise ValueError(f"a world has 4 to 28 concepts, not {n}")
    rng = random.Random(f"siu-world:{seed}:concepts")
    categories = [CATEGORIES[i % len(CATEGORIES)] for i in range(n)]
    pairs = list(itertools.permutations(sorted(COLOURS), 2))
    rng.shuffle(pairs)
    # at most one concept per primary colour within a category keeps categories internally distinct
    chosen: list[tuple[str, str]] = []
    for cat in categories:
        taken_primary = {p for (p, _), c in zip(chosen, categories, strict=False) if c == cat}
        taken_pairs = set(chosen)
        pair = next(pr for pr in pairs if pr not in taken_pairs and pr[0] not in taken_primary)
        chosen.append(pair)
    names = make_names(rng, n)
    banks = {key: rng.sample(bank, n) for key, _, _, bank in FACT_SLOTS}
    concepts = []
    for i, (cat, (primary, secondary), (name, aliases)) in enumerate(
        zip(categories, chosen, names, strict=True)
    ):
        look = Look(cat, rng.choice(VARIANTS[cat]), primary, secondary)
        facts = tuple((key, banks[key][i]) for key, _, _, _ in FACT_SLOTS)
        slug = name.lower().replace(" ", "-")
        concepts.append(WorldConcept(slug, name, aliases, look, facts))
    return concepts
