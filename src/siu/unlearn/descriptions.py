"""Target 2's two halves: what the forget image visibly shows (without the concept's names) and a
counterfactual appearance for the concept."""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

from PIL import Image

from siu.bench.fields import folded
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.models.adapter import Sample
from siu.unlearn.banks import COLOUR_WORDS, DESCRIBE_PROMPT, GENERIC_COUNTERFACTUALS
from siu.unlearn.samples import (
    DataConfig,
    data_rng,
    forget_image_description,
    other_concepts,
    overrides_of,
)

if TYPE_CHECKING:
    from siu.bench.load import Benchmark
    from siu.models.adapter import VLM

_LEAD_INS = re.compile(
    r"^(?:(?:the|this) (?:image|picture|photo|photograph) (?:shows|depicts|features|contains|is of)"
    r"|(?:in )?(?:the|this) (?:image|picture|photo|photograph),?(?: there is| we see)?"
    r"|(?:it|this) (?:is|shows))\s+",
    re.IGNORECASE,
)


def scrub_names(text: str, concept: Concept) -> str:
    """``text`` with every name and alias of ``concept`` replaced by "someone" (or "it")."""
    stand_in = "someone" if concept.category in ("person", "cartoon") else "it"
    for name in sorted((n for n in concept.names if n.strip()), key=len, reverse=True):
        body = re.escape(name.strip())
        pattern = rf"(?<!\w){body}(?!\w)" if name.strip().isascii() else body
        text = re.sub(pattern, stand_in, text, flags=re.IGNORECASE)
    return text


def _clean_description(text: str, concept: Concept) -> str:
    text = " ".join(scrub_names(text, concept).split())
    text = _LEAD_INS.sub("", text)
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first.strip().rstrip(".!?").strip()


def visible_description(
    concept: Concept, forget_image: Image.Image, cfg: DataConfig, original: VLM | None = None
) -> str:
    """What the forget image visibly shows, without any name of the concept.

    In order: the override, the forget image record's ground-truth ``description``, or the original
    model's own description of the image.
    """
    text = overrides_of(cfg).get("visible_description") or forget_image_description(concept)
    if not text and original is not None:
        text = original.generate([Sample(DESCRIBE_PROMPT, image=forget_image)], max_new_tokens=64)[0]
        if not _clean_description(text, concept):
            raise SiuError(
                f"the original model gave no usable description of the forget image of {concept.name!r}; "
                "give visible_description in an override file"
            )
    if not text:
        raise SiuError(
            f"target 2 needs a description of what the forget image of {concept.name!r} shows: the "
            "image record has none; give visible_description in an override file or pass the original "
            "model (--original) to describe it"
        )
    return _clean_description(text, concept)


def _swap_colours(appearance: str, rng: random.Random, avoid: set[str]) -> str | None:
    pattern = re.compile(r"\b(" + "|".join(COLOUR_WORDS) + r")\b", re.IGNORECASE)
    present = list(dict.fromkeys(m.lower() for m in pattern.findall(appearance)))
    if not present:
        return None
    spare = [c for c in COLOUR_WORDS if c not in present]
    if len(spare) < len(present):
        spare = list(COLOUR_WORDS)
    candidate = appearance
    for _ in range(20):
        mapping = dict(zip(present, rng.sample(spare, len(present)), strict=True))
        candidate = pattern.sub(lambda m, table=mapping: table[m.group(1).lower()], appearance)
        candidate = _fix_articles(candidate)
        if folded(candidate) != folded(appearance) and folded(candidate) not in avoid:
            break
    return candidate if folded(candidate) != folded(appearance) else None


def _fix_articles(text: str) -> str:
    """Fix the article before a colour word: "a orange" becomes "an orange", "an red" becomes "a red"."""

    def article(m: re.Match[str]) -> str:
        a = "an" if m.group(2)[0].lower() in "aeiou" else "a"
        return (a.capitalize() if m.group(1)[0].isupper() else a) + " " + m.group(2)

    return re.sub(r"\b([Aa]n?) (" + "|".join(COLOUR_WORDS) + r")\b", article, text, flags=re.IGNORECASE)


def _has_phrase(appearance: str) -> str:
    """Turn "a person with X" into "X" (what someone *has*); otherwise "the appearance of ..."."""
    head, sep, tail = appearance.partition(" with ")
    colours = re.compile(r"\b(" + "|".join(COLOUR_WORDS) + r")\b", re.IGNORECASE)
    if sep and tail.strip() and not colours.search(head):
        return tail.strip()
    return f"the appearance of {appearance}"


def counterfactual_appearance(concept: Concept, bench: Benchmark | None, cfg: DataConfig) -> str:
    """A different appearance for the concept, phrased to follow "has" (deterministic from the seed)."""
    override = overrides_of(cfg).get("counterfactual")
    if override:
        return override.strip().rstrip(".")
    rng = data_rng(cfg, concept, "counterfactual")
    appearance = (concept.appearance or "").strip().rstrip(".")
    if appearance:
        known = {folded(c.appearance) for c in other_concepts(concept, bench) if c.appearance}
        swapped = _swap_colours(appearance, rng, known)
        if swapped is not None:
            return _has_phrase(swapped)
    bank = GENERIC_COUNTERFACTUALS["person" if concept.category in ("person", "cartoon") else "other"]
    options = [g for g in bank if folded(g) not in folded(appearance)] or bank
    return rng.choice(options)
