"""The MMUBench on-disk format as typed records.

A benchmark directory holds ``manifest.json``, an optional ``specificity.json``, an optional
``pairs.json`` (pictures of two concepts) and one folder
per concept with ``concept.json`` and its images. ``docs/FORMAT.md`` documents every field; the
validator in :mod:`siu.bench.validate` explains every deviation. These dataclasses are the one
in-memory form that the world builder writes and every other layer reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FORMAT_NAME = "mmubench"
FORMAT_VERSION = 1

CATEGORIES = ("person", "cartoon", "logo", "object", "style")
"""MMUBench's concept categories: people, cartoon characters, logos, objects/landmarks, art styles."""

PromptType = Literal["name", "yesno"]


@dataclass
class Fact:
    """One fact about a concept: a text-only question and its answer; ``value`` is what must appear."""

    key: str
    question: str
    answer: str
    value: str


@dataclass
class ImageRecord:
    """One image of the concept. Exactly one image per concept is the forget image."""

    file: str
    forget: bool = False
    description: str | None = None  # what is visible, without any name (ground truth when known)


@dataclass
class RecognitionPrompt:
    """A question about the picture; the concept counts as recognised if an answer contains a target.

    ``type`` is ``name`` (targets are the name and aliases) or ``yesno`` (target ``yes``).
    ``heldout`` marks paraphrases that never occur in pre-training (synthetic world only).
    """

    prompt: str
    type: PromptType
    targets: list[str]
    language: str = "en"
    heldout: bool = False


@dataclass
class QA:
    """A question with the strings any of which makes an answer correct."""

    question: str
    answers: list[str]
    key: str | None = None
    heldout: bool = False


@dataclass
class Concept:
    name: str
    aliases: list[str]
    category: str
    facts: list[Fact]
    special_tokens: list[str]
    images: list[ImageRecord]
    recognition_prompts: list[RecognitionPrompt]
    multilingual_prompts: list[RecognitionPrompt]
    multihop: list[QA]  # questions through the picture, e.g. "Where was the person in this image born?"
    fact_questions: list[QA]  # text-only questions about the concept, for fact retention and MIA
    appearance: str | None = None  # how the concept looks, in words (used for counterfactuals)
    slug: str = ""  # folder name inside the benchmark, filled in by the loader

    @property
    def forget_image(self) -> ImageRecord:
        return next(img for img in self.images if img.forget)

    @property
    def test_images(self) -> list[ImageRecord]:
        return [img for img in self.images if not img.forget]

    @property
    def names(self) -> list[str]:
        """The name followed by its aliases: every string that identifies the concept."""
        return [self.name, *self.aliases]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("slug")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], slug: str = "") -> Concept:
        return cls(
            name=data["name"],
            aliases=list(data.get("aliases", [])),
            category=data["category"],
            facts=[Fact(**f) for f in data.get("facts", [])],
            special_tokens=list(data.get("special_tokens", [])),
            images=[ImageRecord(**i) for i in data.get("images", [])],
            recognition_prompts=[RecognitionPrompt(**p) for p in data.get("recognition_prompts", [])],
            multilingual_prompts=[RecognitionPrompt(**p) for p in data.get("multilingual_prompts", [])],
            multihop=[QA(**q) for q in data.get("multihop", [])],
            fact_questions=[QA(**q) for q in data.get("fact_questions", [])],
            appearance=data.get("appearance"),
            slug=slug,
        )


@dataclass
class SpecificityItem:
    """A generic visual question whose answer does not depend on knowing any concept."""

    image: str
    question: str
    answers: list[str]
    kind: str = "vqa"


@dataclass
class PairPicture:
    """A picture of two concepts side by side, for the butterfly effect: after forgetting one, is the
    other still named beside it? ``concepts`` are their folder names (left, right); ``prompts`` holds,
    for each in the same order, a question that asks for that one's name (naming its category)."""

    image: str  # relative to the benchmark root
    concepts: list[str]
    prompts: list[str]


@dataclass
class Manifest:
    name: str
    concepts: list[str]  # folder names under ``concepts/``
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    description: str = ""
    languages: list[str] = field(default_factory=lambda: ["en"])
    specificity: str | None = "specificity.json"
    generator: dict[str, Any] | None = None  # how a synthetic benchmark was made (seed, version)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
