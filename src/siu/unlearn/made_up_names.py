"""Target 1's made-up identities: ordinary names (siu.names) sharing no word with any concept, least
likely to teach the model to run on past a known name, likeliest to the original model."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from siu.bench.match import mentions
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.names import FIRST_NAMES, LAST_NAMES
from siu.unlearn.samples import NAME_CANDIDATES, DataConfig, data_rng, other_concepts, overrides_of, word_set

if TYPE_CHECKING:
    from siu.bench.load import Benchmark

# First + last combinations that name well-known people or characters: never used.
FAMOUS_COMBOS = {
    "emma thompson", "paul walker", "diana spencer", "kevin bishop", "robert porter",
    "george harris", "edward hughes", "thomas hughes", "emily thompson",
}  # fmt: skip


def fictitious_name(rng: random.Random, forbidden: Iterable[str]) -> str:
    """A plausible made-up "First Last" name sharing no word (case-insensitive) with ``forbidden``."""
    banned = word_set(forbidden)
    first = [n for n in FIRST_NAMES if n.casefold() not in banned]
    last = [n for n in LAST_NAMES if n.casefold() not in banned]
    if not first or not last:
        raise SiuError("cannot make up a fictitious name: every name in the banks is taken")
    for _ in range(1000):
        name = f"{rng.choice(first)} {rng.choice(last)}"
        if name.casefold() not in FAMOUS_COMBOS:
            return name
    raise SiuError("cannot make up a fictitious name: every combination of the name banks is excluded")


def name_leak_risks(
    names: Sequence[str], known: Iterable[str], tokenize: Callable[[str], list[str]]
) -> list[int]:
    """For each of ``names``: how many steps of saying it would teach the model to run on past the
    end of a known word.

    Training on "This is Oliver Crawford." teaches every step inside the name, e.g. "ra" -> "w"; a
    known name whose word ends in "ra" ("Tamdra") is then said as "Tamdrawarren" (measured on the
    synthetic world, whose small vocabulary splits names into short pieces). A step counts when it
    starts at a token that ends a word of ``known`` and goes where no known word goes.
    """
    ends: set[str] = set()
    steps: set[tuple[str, str]] = set()
    for word in {w for text in known for w in text.split()}:
        for spelled in (" " + word, word):
            tokens = tokenize(spelled)
            if tokens:
                ends.add(tokens[-1])
                steps.update(zip(tokens, tokens[1:], strict=False))
    risks = []
    for name in names:
        tokens = tokenize(" " + name)
        risks.append(sum(a in ends and (a, b) not in steps for a, b in zip(tokens, tokens[1:], strict=False)))
    return risks


def name_leak_risk(name: str, known: Iterable[str], tokenize: Callable[[str], list[str]]) -> int:
    """:func:`name_leak_risks` of one name."""
    return name_leak_risks([name], known, tokenize)[0]


def choose_fictitious_names(
    concept: Concept,
    bench: Benchmark | None,
    cfg: DataConfig,
    likelihood: Callable[[list[str]], list[float]] | None = None,
    tokenize: Callable[[str], list[str]] | None = None,
) -> list[str]:
    """The override's names, or ``cfg.identities`` made-up names: of ``NAME_CANDIDATES`` drawn from
    the name banks, those least likely to corrupt a known word (:func:`name_leak_risks`, with the
    model's ``tokenize``), then the ones the original model finds likeliest (``likelihood``), then
    the first drawn."""
    override = overrides_of(cfg).get("fictitious_names")
    if override:
        for name in override:
            if mentions(name, concept.names) or word_set([name]) & word_set(concept.names):
                raise SiuError(f"fictitious name {name!r} shares a word with {concept.name!r}'s names")
        return list(override)
    concepts = [concept, *other_concepts(concept, bench)]
    known = [name for c in concepts for name in c.names]
    forbidden = known + [f.value for c in concepts for f in c.facts]
    taken = {name.casefold() for name in cfg.taken_names}
    banned = word_set([*forbidden, *cfg.taken_names])
    free = min(sum(n.casefold() not in banned for n in bank) for bank in (FIRST_NAMES, LAST_NAMES))
    if free >= cfg.identities:
        forbidden += list(cfg.taken_names)  # no word shared with another concept's made-up names
    # else a joint run of many concepts has used up the banks' words: its names then share words,
    # never a whole name
    rng = data_rng(cfg, concept, "name")
    drawn = (fictitious_name(rng, forbidden) for _ in range(NAME_CANDIDATES))
    candidates = [name for name in dict.fromkeys(drawn) if name.casefold() not in taken]
    # Only the known *names* count for the risk: they are what recognition must keep saying intact
    # (with fact words too, almost no made-up name is free of risk in a small vocabulary).
    risks = name_leak_risks(candidates, known, tokenize) if tokenize else [0] * len(candidates)
    scores = likelihood(candidates) if likelihood is not None else [0.0] * len(candidates)
    order = sorted(range(len(candidates)), key=lambda i: (risks[i], -scores[i]))  # ties: drawing order
    return [candidates[i] for i in order[: cfg.identities]]
