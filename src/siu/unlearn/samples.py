"""The records of unlearning data (:class:`UnlearnSample`), the settings every builder reads
(:class:`DataConfig`), the helpers the builders share, and the data as a table (``--dry-run``) or as
records (``run.json``)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from siu.bench.fields import folded
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.models.adapter import Sample
from siu.tables import format_table
from siu.unlearn.overrides import check_overrides

if TYPE_CHECKING:
    from siu.bench.load import Benchmark

TARGETS = (1, 2, 3, 4)
TARGET_LABELS = {
    0: "forget set (the forget image)",
    1: "fictitious identity",
    2: "new visual description",
    3: "own facts (text)",
    4: "other concepts' facts (text)",
    5: "other concepts named on their own forget images",
}
OTHERS_ON_THEIR_IMAGES = 5

# How a question refers to the concept through the picture.
CATEGORY_NOUNS = {
    "person": "person",
    "cartoon": "character",
    "logo": "logo",
    "object": "building",
    "style": "painting",
}
FALLBACK_NOUN = "subject"

# Made-up names drawn per run (siu.unlearn.made_up_names keeps the least risky, then the original
# model's likeliest); DataConfig.identities is at most this.
NAME_CANDIDATES = 64


@dataclass
class UnlearnSample:
    """One fine-tuning sample and the SIU target it serves (1-4; 0 for a baseline's forget set, 5 for
    other concepts named on their own pictures).

    ``role``: forget or retain set (methods with a retain term treat them apart). ``pair``: preference
    pairs (``chosen`` is the preferred answer) share a number; -1 for none.
    """

    target: int
    sample: Sample
    view: int = 0  # which view of the forget image (0: the image itself; see siu.unlearn.views)
    role: str = "forget"
    pair: int = -1
    chosen: bool = False


@dataclass
class DataConfig:
    """How many samples per target (targets 1-4), which targets, the seed and the user's overrides."""

    counts: tuple[int, int, int, int] = (9, 2, 7, 7)
    seed: int = 0
    targets: tuple[int, ...] = TARGETS
    overrides: dict[str, Any] | None = None
    # Target 1's made-up identities: 1 (the paper's example: one name for every prompt) or more (a
    # different one per prompt, cycled), so that no single name is learnt for every picture.
    identities: int = 1
    # Several concepts forgotten in one run: every one's names (target 4 and the retain pictures are
    # never about them) and the made-up names already given to the others (never given twice).
    forgotten: tuple[str, ...] = ()
    taken_names: tuple[str, ...] = ()
    # SIU's data: this many other concepts, each named on its own forget image, where a benchmark has
    # them (never a test image): they hold the others' names in place while the concept's is unlearnt.
    others_pictures: int = 0

    def count(self, target: int) -> int:
        return self.counts[target - 1]

    def check(self) -> None:
        if len(self.counts) != 4 or any(
            not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in self.counts
        ):
            raise SiuError(f"counts must be four non-negative integers (targets 1-4), got {self.counts!r}")
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise SiuError(f"targets must be a non-empty subset of 1, 2, 3, 4; got {self.targets!r}")
        if not isinstance(self.identities, int) or not 1 <= self.identities <= NAME_CANDIDATES:
            raise SiuError(
                f"identities must be an integer from 1 to {NAME_CANDIDATES}, got {self.identities!r}"
            )
        n = self.others_pictures
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SiuError(f"others_pictures must be a non-negative integer, got {self.others_pictures!r}")
        if self.overrides is not None:
            check_overrides(self.overrides)


def word_set(texts: Iterable[str]) -> set[str]:
    return {w.casefold() for t in texts for w in re.findall(r"\w+", t)}


def category_noun(concept: Concept) -> str:
    return CATEGORY_NOUNS.get(concept.category, FALLBACK_NOUN)


def data_rng(cfg: DataConfig, concept: Concept, stream: str) -> random.Random:
    return random.Random(f"siu-data:{cfg.seed}:{concept.name}:{stream}")


def cycled(items: Sequence[Any], n: int) -> list[Any]:
    return [items[i % len(items)] for i in range(n)] if items else []


def evaluation_prompts(concept: Concept, bench: Benchmark | None = None) -> set[str]:
    """Normalised prompts the benchmark evaluates with (every concept's, or ``concept``'s without one)."""
    concepts = list(bench.concepts) if bench is not None else []
    if all(c is not concept and c.name != concept.name for c in concepts):
        concepts.append(concept)
    found: set[str] = set()
    for c in concepts:
        found.update(folded(p.prompt) for p in (*c.recognition_prompts, *c.multilingual_prompts))
        found.update(folded(q.question) for q in (*c.multihop, *c.fact_questions))
        found.update(folded(f.question) for f in c.facts)
    return found


def unseen_prompts(prompts: Iterable[str], evals: set[str]) -> list[str]:
    """Distinct prompts in order, without those that equal an evaluation prompt."""
    return [p for p in dict.fromkeys(prompts) if folded(p) not in evals]


def overrides_of(cfg: DataConfig) -> dict[str, Any]:
    return cfg.overrides or {}


def prompt_bank(cfg: DataConfig, key: str, default: list[str]) -> list[str]:
    return list(overrides_of(cfg).get("prompts", {}).get(key) or default)


def forget_image_description(concept: Concept) -> str | None:
    record = next((img for img in concept.images if img.forget), None)
    return record.description if record is not None else None


def other_concepts(concept: Concept, bench: Benchmark | None) -> list[Concept]:
    if bench is None:
        return []
    return [c for c in bench.concepts if c is not concept and c.name != concept.name]


def kept_concepts(concept: Concept, bench: Benchmark | None, cfg: DataConfig) -> list[Concept]:
    """The other concepts the run keeps: every other one but those forgotten with ``concept``."""
    gone = {folded(name) for name in cfg.forgotten}
    return [c for c in other_concepts(concept, bench) if folded(c.name) not in gone]


# ----------------------------------------------------------------------------- presentation
def _short(text: str | None, width: int) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3].rstrip() + "..."


def _image_label(s: UnlearnSample, plain: str, viewed: str, none: str | None, other: str) -> str | None:
    if s.sample.image is None:
        return none
    if s.role == "retain":  # a retain picture is another concept's own forget image
        return other
    return viewed.format(k=s.view) if s.view else plain


def format_dataset(samples: Sequence[UnlearnSample], width: int = 60) -> str:
    """A readable table of the fine-tuning data (for ``siu unlearn --dry-run``); "set" is forget or
    retain, with ``+k`` / ``-k`` for the preferred / dispreferred answer of preference pair k."""
    rows = [
        [
            i,
            s.target,
            s.role + (f" {'+' if s.chosen else '-'}{s.pair}" if s.pair >= 0 else ""),
            _image_label(s, "yes", "view {k}", "no", "another's"),
            _short(s.sample.prompt, width),
            _short(s.sample.answer, width + 20),
            _short(s.sample.target_phrase, 30),
        ]
        for i, s in enumerate(samples)
    ]
    table = format_table(["#", "target", "set", "image", "prompt", "answer", "target phrase"], rows)
    present = sorted({s.target for s in samples})
    legend = "; ".join(f"{t} = {TARGET_LABELS.get(t, '?')}" for t in present)
    head = f"{len(samples)} samples" + (f" (target {legend})" if legend else "")
    return f"{head}\n{table}"


def dataset_record(samples: Sequence[UnlearnSample]) -> list[dict[str, Any]]:
    """JSON-serialisable records of the data (images are named, not stored)."""
    return [
        {
            "index": i,
            "target": s.target,
            "image": _image_label(
                s, "forget image", "forget image, view {k}", None, "another concept's forget image"
            ),
            "prompt": s.sample.prompt,
            "answer": s.sample.answer,
            "target_phrase": s.sample.target_phrase,
            "role": s.role,
            **({"pair": s.pair, "chosen": s.chosen} if s.pair >= 0 else {}),
        }
        for i, s in enumerate(samples)
    ]
