"""The pre-training corpus of the synthetic world's model.

Recognition from images, yes/no questions with negatives, other languages, multi-hop questions
through the picture, generic colour questions and descriptions, and text-only facts. Pre-training
images come from their own random stream, so the benchmark's images stay unseen. With ``without``
set, no image of that concept appears (its text facts stay): the gold retain model's corpus.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from siu.models.adapter import Sample
from siu.names import FIRST_NAMES, LAST_NAMES
from siu.world.concepts import WorldConcept
from siu.world.render import render
from siu.world.text import (
    DESCRIBE_PROMPTS,
    FACT_HELDOUT,
    FACT_SLOTS,
    MULTIHOP_REFS,
    MULTIHOP_TEMPLATES_PER_SLOT,
    MULTILINGUAL,
    NAME_PROMPTS,
    NOUNS,
    PEOPLE_ANSWER,
    PEOPLE_JOBS,
    PEOPLE_QUESTIONS,
    SYLLABLES,
    VQA_BACKGROUND,
    VQA_MAIN,
    YESNO_PROMPTS,
)


@dataclass(frozen=True)
class CorpusConfig:
    images_per_concept: int = 160
    samples_per_image: int = 2
    fact_repeats: int = 3
    people_repeats: int = 2
    image_size: int = 64


def _seen(templates: list[tuple[str, bool]]) -> list[str]:
    return [t for t, held in templates if not held]


def fact_samples(wc: WorldConcept) -> list[Sample]:
    out = []
    for key, questions, answer, _ in FACT_SLOTS:
        a = answer.format(name=wc.name, value=wc.fact(key))
        out.extend(Sample(q.format(ref=wc.name), a) for i, q in enumerate(questions) if i not in FACT_HELDOUT)
    return out


TASK_WEIGHTS = {
    "name": 3.0,
    "yes": 2.0,
    "no": 2.0,
    "multilingual": 1.5,
    "multihop": 1.5,
    "background": 3.0,
    "main_colour": 1.5,
    "describe": 0.3,
}


def image_samples(
    wc: WorldConcept, others: list[WorldConcept], seed: int, cfg: CorpusConfig
) -> Iterator[Sample]:
    """Many images with a few questions each: the model cannot memorise single pictures."""
    rng = random.Random(f"siu-world:{seed}:pretrain-text:{wc.slug}")
    noun = NOUNS[wc.category]
    tasks, weights = zip(*TASK_WEIGHTS.items(), strict=True)
    for i in range(cfg.images_per_concept):
        img, bg = render(wc.look, random.Random(f"siu-world:{seed}:pretrain:{wc.slug}:{i}"), cfg.image_size)
        for task in rng.choices(tasks, weights, k=cfg.samples_per_image):
            if task == "no" and not others:
                task = "yes"
            yield _task_sample(task, wc, others, img, bg, noun, rng)


def _task_sample(
    task: str,
    wc: WorldConcept,
    others: list[WorldConcept],
    img: Image.Image,
    bg: str,
    noun: str,
    rng: random.Random,
) -> Sample:
    if task == "name":
        return Sample(rng.choice(_seen(NAME_PROMPTS)).format(noun=noun), f"This is {wc.name}.", img)
    if task in ("yes", "no"):
        # as many negatives as positives, so the answer must depend on the image and the name asked
        asked = wc.name if task == "yes" else rng.choice(others).name
        return Sample(
            rng.choice(_seen(YESNO_PROMPTS)).format(noun=noun, name=asked), f"{task.capitalize()}.", img
        )
    if task == "multilingual":
        templates, answer = MULTILINGUAL[rng.choice(sorted(MULTILINGUAL))]
        return Sample(rng.choice(_seen(templates)), answer.format(name=wc.name), img)
    if task == "multihop":
        key, questions, answer, _ = rng.choice(FACT_SLOTS)
        ref = rng.choice(_seen(MULTIHOP_REFS)).format(noun=noun)
        q = rng.choice(questions[:MULTIHOP_TEMPLATES_PER_SLOT]).format(ref=ref)
        return Sample(q, answer.format(name=wc.name, value=wc.fact(key)), img)
    if task == "background":
        return Sample(rng.choice(_seen(VQA_BACKGROUND)), f"The background is {bg}.", img)
    if task == "main_colour":
        q = rng.choice(_seen(VQA_MAIN)).format(noun=noun)
        return Sample(q, f"The {noun} is mostly {wc.look.primary}.", img)
    desc = f"The picture shows {wc.look.describe()} on a {bg} background."
    return Sample(rng.choice(DESCRIBE_PROMPTS), desc, img)


def ordinary_people(seed: int) -> list[tuple[str, str]]:
    """(name, job) of the ordinary people the world's LM reads about: every first name and every
    surname of siu.names at least once, paired at random (deterministic per seed)."""
    rng = random.Random(f"siu-world:{seed}:people")
    lasts = list(LAST_NAMES)
    rng.shuffle(lasts)
    n = max(len(FIRST_NAMES), len(LAST_NAMES))
    return [
        (f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {lasts[i % len(lasts)]}", rng.choice(PEOPLE_JOBS))
        for i in range(n)
    ]


def people_samples(seed: int) -> list[Sample]:
    """Text-only questions about ordinary people (not concepts: they have no pictures)."""
    return [
        Sample(q.format(person=name), PEOPLE_ANSWER.format(person=name, job=job))
        for name, job in ordinary_people(seed)
        for q in PEOPLE_QUESTIONS
    ]


def build_corpus(
    concepts: list[WorldConcept], seed: int, cfg: CorpusConfig, without: str | None = None
) -> list[Sample]:
    samples: list[Sample] = people_samples(seed) * cfg.people_repeats
    for wc in concepts:
        samples.extend(fact_samples(wc) * cfg.fact_repeats)
        if wc.slug != without:
            others = [o for o in concepts if o.slug != wc.slug]
            samples.extend(image_samples(wc, others, seed, cfg))
    return samples


def tokenizer_texts(concepts: list[WorldConcept], samples: list[Sample], prompts: list[str]) -> list[str]:
    """Text to train the tokenizer on: everything but the concepts' names.

    Names are left out (only their syllables are seen) so that they split into several tokens, as
    real names do in real tokenizers.
    """
    name_words = {w for wc in concepts for n in (wc.name, *wc.aliases) for w in n.split()}
    # answers follow "ASSISTANT:" after a space, as in the rendered conversation
    texts = sorted({s.prompt for s in samples} | {" " + s.answer for s in samples} | set(prompts))
    cleaned = []
    for t in texts:
        for w in name_words:
            t = t.replace(w, "")
        cleaned.append(t)
    cleaned.append("USER: ASSISTANT: USER: ASSISTANT:")
    syllables = " ".join(SYLLABLES + [s.capitalize() for s in SYLLABLES])
    return cleaned * 2 + [syllables] * 4
