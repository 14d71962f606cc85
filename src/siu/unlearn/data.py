"""SIU's multifaceted fine-tuning data, built automatically from one forget image (SIU.md section 2).

Four targets, each a list of :class:`UnlearnSample`:

1. *Aligning with unseen concepts* (image + question): "who is this?" paraphrases answered with a
   made-up, ordinary identity (one, or ``identities`` of them in turn), in the original model's own
   words ("This is <fake>." when it says "This is <C>."), choosing made-up names whose pieces would
   not teach the model to run on past the end of a known name (:mod:`siu.unlearn.made_up_names`), and of those
   the ones the original model finds likeliest; the fictitious name is the ``target_phrase``.
2. *Assigning a new visual description* (image + question): "No. The picture depicts <what is
   visible>. But <C> actually has <a counterfactual appearance>."; the whole answer is the
   ``target_phrase``.
3. *Decoupling factual knowledge* (text only): paraphrased questions about ``C`` answered with its
   true facts (the benchmark record, or the original model's own answers).
4. *Preserving non-targeted knowledge* (text only): the same for other concepts of the benchmark.

Baselines with the same data budget (PO, GA, GA+KL; section 5) come from
:func:`build_baseline_data`. Every training prompt is kept disjoint from the benchmark's evaluation
prompts, so that efficacy and generality are never measured on the training questions. A user can
override any part with a YAML or JSON file (:mod:`siu.unlearn.overrides`). Everything is deterministic
for a given seed; each target draws from its own random stream, so choosing a subset of targets leaves
the others unchanged.

The pieces live beside it: the records and settings (:mod:`siu.unlearn.samples`), the text banks
(:mod:`siu.unlearn.banks`), made-up names (:mod:`siu.unlearn.made_up_names`) and target 2's
descriptions (:mod:`siu.unlearn.descriptions`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image

from siu.bench.fields import folded
from siu.bench.match import first_mention, mentions
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.models.adapter import Sample
from siu.unlearn.banks import (
    CONFIRM_ANSWERS,
    CONFIRM_PROMPTS,
    DESCRIPTION_ANSWER,
    FACT_PROMPTS,
    IDENTITY_ANSWERS,
    IDENTITY_PROMPTS,
    NAMING_ANSWERS,
    OTHER_REFUSAL,
    PERSON_REFUSAL,
    RECOGNIZE_PROMPTS,
    REFUSALS,
    WELL_KNOWN_SUBJECTS,
)
from siu.unlearn.descriptions import counterfactual_appearance, visible_description
from siu.unlearn.made_up_names import choose_fictitious_names
from siu.unlearn.samples import (
    OTHERS_ON_THEIR_IMAGES,
    DataConfig,
    UnlearnSample,
    category_noun,
    cycled,
    data_rng,
    evaluation_prompts,
    kept_concepts,
    overrides_of,
    prompt_bank,
    unseen_prompts,
)

if TYPE_CHECKING:
    from siu.bench.load import Benchmark
    from siu.models.adapter import VLM


# ----------------------------------------------------------------------------- targets
def own_naming_prefixes(
    concept: Concept, image: Image.Image, prompts: Sequence[str], original: VLM | None
) -> list[str | None]:
    """How the original model itself starts its answer to each prompt, up to the concept's name.

    "This is Jipel Testam." gives "This is "; an answer that does not name the concept gives None.
    Target 1 answers in the model's own words with only the identity swapped, so the cross-entropy
    goes into the name and the token-masked KL agrees with the rest of the answer.
    """
    if original is None:
        return [None] * len(prompts)
    answers = original.generate([Sample(p, image=image) for p in prompts], max_new_tokens=32)
    prefixes: list[str | None] = []
    for answer in answers:
        span = first_mention(answer, concept.names)
        prefixes.append(answer[: span[0]] if span is not None else None)
    return prefixes


def _target1(
    concept: Concept,
    image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    evals: set[str],
    original: VLM | None = None,
) -> list[UnlearnSample]:
    n = cfg.count(1)
    if n == 0:
        return []
    rng = data_rng(cfg, concept, "t1")
    noun = category_noun(concept)
    prompts = [t.format(noun=noun) for t in prompt_bank(cfg, "target1", IDENTITY_PROMPTS)]
    rng.shuffle(prompts)
    prompts = cycled(_require(unseen_prompts(prompts, evals), 1), n)
    answers = list(IDENTITY_ANSWERS)
    rng.shuffle(answers)
    prefixes = own_naming_prefixes(concept, image, prompts, original)

    def likelihood(candidates: list[str]) -> list[float]:
        # The identities the original model finds easiest to say about this image: "ordinary,
        # made-up" in the model's own terms, so that learning them changes the least.
        assert original is not None
        prefix = prefixes[0] if prefixes[0] is not None else "This is "
        scored = [Sample(prompts[0], f"{prefix}{name}.", image) for name in candidates]
        return [float(lp.sum()) for lp in original.answer_logprobs(scored)]

    names = choose_fictitious_names(
        concept,
        bench,
        cfg,
        likelihood if original is not None else None,
        original.tokenizer.tokenize if original is not None else None,
    )
    out = []
    for i, (prompt, prefix) in enumerate(zip(prompts, prefixes, strict=True)):
        fake = names[i % len(names)]
        if prefix is not None:
            answer = f"{prefix}{fake}."
        else:  # no original model, or it did not name the concept: a template answer
            answer = answers[i % len(answers)].format(noun=noun, fake=fake)
        out.append(UnlearnSample(1, Sample(prompt, answer, image, target_phrase=fake)))
    return out


def _target2(
    concept: Concept,
    image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    evals: set[str],
    original: VLM | None,
) -> list[UnlearnSample]:
    n = cfg.count(2)
    if n == 0:
        return []
    rng = data_rng(cfg, concept, "t2")
    noun = category_noun(concept)
    prompts = [t.format(name=concept.name, noun=noun) for t in prompt_bank(cfg, "target2", RECOGNIZE_PROMPTS)]
    rng.shuffle(prompts)
    prompts = _require(unseen_prompts(prompts, evals), 2)
    visible = visible_description(concept, image, cfg, original)
    counterfactual = counterfactual_appearance(concept, bench, cfg)
    answer = DESCRIPTION_ANSWER.format(visible=visible, name=concept.name, counterfactual=counterfactual)
    return [UnlearnSample(2, Sample(p, answer, image, target_phrase=answer)) for p in cycled(prompts, n)]


def _rotate(items: list[str], i: int) -> list[str]:
    k = i % len(items) if items else 0
    return items[k:] + items[:k]


def _prompt_for(name: str, templates: list[str], evals: set[str], target: int) -> str:
    """The first of ``templates`` (filled with ``name``) that is not an evaluation prompt."""
    for template in templates:
        prompt = template.format(name=name)
        if folded(prompt) not in evals:
            return prompt
    raise _all_seen(target)


def _fact_samples(
    items: Sequence[tuple[str, str | None, str | None]],
    templates: list[str],
    evals: set[str],
    original: VLM | None,
    target: int,
) -> list[UnlearnSample]:
    """Text samples from (concept name, question or None, answer or None) items.

    A missing question becomes a paraphrase from ``templates`` (rotating, so prompts vary); a question
    that equals an evaluation prompt is replaced the same way. Missing answers are the original
    model's own answers to the prompts.
    """
    prompts, answers = [], []
    for i, (name, question, answer) in enumerate(items):
        if question and folded(question) not in evals:
            prompts.append(question)
        else:
            prompts.append(_prompt_for(name, _rotate(templates, i), evals, target))
        answers.append(answer)
    missing = [i for i, a in enumerate(answers) if a is None]
    if missing:
        names = list(dict.fromkeys(items[i][0] for i in missing))
        if original is None:
            raise SiuError(
                f"target {target}: no facts recorded for {', '.join(map(repr, names))}; add facts "
                f"({'facts' if target == 3 else 'other_facts'}) to the override file or pass the "
                "original model (--original) to answer the questions itself"
            )
        generated = original.generate([Sample(prompts[i]) for i in missing], max_new_tokens=64)
        for i, text in zip(missing, generated, strict=True):
            if not text.strip():
                raise SiuError(
                    f"target {target}: the original model gave an empty answer to {prompts[i]!r}; "
                    "give facts in the override file"
                )
            answers[i] = text.strip()
    return [UnlearnSample(target, Sample(p, a), role="retain") for p, a in zip(prompts, answers, strict=True)]


def _target3(concept: Concept, cfg: DataConfig, evals: set[str], original: VLM | None) -> list[UnlearnSample]:
    n = cfg.count(3)
    if n == 0:
        return []
    rng = data_rng(cfg, concept, "t3")
    templates = prompt_bank(cfg, "target3", FACT_PROMPTS)
    rng.shuffle(templates)
    override = overrides_of(cfg).get("facts")
    facts: list[tuple[str | None, str | None]]
    if override:
        facts = [(f.get("question"), f["answer"]) for f in override]
    elif concept.facts:
        facts = [(None, f.answer) for f in concept.facts]
        rng.shuffle(facts)
    else:
        facts = [(None, None)]  # the original model answers
    items = [(concept.name, *facts[i % len(facts)]) for i in range(n)]
    return _fact_samples(items, templates, evals, original, 3)


def _target4(
    concept: Concept, bench: Benchmark | None, cfg: DataConfig, evals: set[str], original: VLM | None
) -> list[UnlearnSample]:
    n = cfg.count(4)
    if n == 0:
        return []
    rng = data_rng(cfg, concept, "t4")
    templates = prompt_bank(cfg, "target4", FACT_PROMPTS)
    rng.shuffle(templates)
    override = overrides_of(cfg).get("other_facts")
    items: list[tuple[str, str | None, str | None]]
    if override:
        pool = [(f.get("name") or "", f.get("question"), f["answer"]) for f in override]
        for name, question, _ in pool:
            if not name and question and folded(question) in evals:
                raise SiuError(
                    f"other_facts: {question!r} equals a benchmark evaluation prompt; change it or give "
                    "the concept's 'name' so that a paraphrase can replace it"
                )
        items = [pool[i % len(pool)] for i in range(n)]
        return _fact_samples(items, templates, evals, original, 4)
    others = kept_concepts(concept, bench, cfg)
    if not others:
        if original is None:
            raise SiuError(
                "target 4 needs facts about other concepts: give a benchmark with other concepts, "
                "other_facts in the override file, or the original model to answer about well-known ones"
            )
        forgotten = [*concept.names, *cfg.forgotten]
        subjects = [s for s in WELL_KNOWN_SUBJECTS if not mentions(s, forgotten)]
        pool_names: list[tuple[str, str | None, str | None]] = [(s, None, None) for s in subjects]
        order = rng.sample(pool_names, len(pool_names))
        return _fact_samples([order[i % len(order)] for i in range(n)], templates, evals, original, 4)
    recorded = [(c.name, None, f.answer) for c in others for f in c.facts]
    # Without recorded facts the original model answers about the other concepts itself.
    pool = recorded or [(c.name, None, None) for c in others]
    order = rng.sample(pool, len(pool))
    items = [order[i % len(order)] for i in range(n)]
    return _fact_samples(items, templates, evals, original, 4)


def _all_seen(target: int) -> SiuError:
    return SiuError(
        f"every target-{target} prompt equals a benchmark evaluation prompt; "
        f"give other prompts (prompts.target{target}) in the override file"
    )


def _require(prompts: list[str], target: int) -> list[str]:
    if not prompts:
        raise _all_seen(target)
    return prompts


# ----------------------------------------------------------------------------- public builders
def build_siu_data(
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
) -> list[UnlearnSample]:
    """SIU's fine-tuning data for ``concept`` from its one forget image, target by target.

    ``bench`` supplies other concepts (target 4, names to avoid, ``cfg.others_pictures`` of them named
    on their own forget images) and the evaluation prompts that training prompts must not repeat.
    ``original`` (the model before unlearning) is used only where the records lack something: the
    visible description (target 2) or facts (targets 3-4).
    """
    cfg.check()
    evals = evaluation_prompts(concept, bench)
    out: list[UnlearnSample] = []
    for target in sorted(set(cfg.targets)):
        if target == 1:
            out += _target1(concept, forget_image, bench, cfg, evals, original)
        elif target == 2:
            out += _target2(concept, forget_image, bench, cfg, evals, original)
        elif target == 3:
            out += _target3(concept, cfg, evals, original)
        else:
            out += _target4(concept, bench, cfg, evals, original)
    return out + others_on_their_images(concept, bench, cfg.others_pictures, cfg)


def _forget_prompts(
    concept: Concept, cfg: DataConfig, bench: Benchmark | None, rng: random.Random
) -> list[tuple[str, bool]]:
    """The forget image's questions (naming and "is this C?"), shuffled; True marks a yes/no question."""
    evals = evaluation_prompts(concept, bench)
    noun = category_noun(concept)
    naming = [t.format(noun=noun) for t in prompt_bank(cfg, "target1", IDENTITY_PROMPTS)]
    confirm = [t.format(name=concept.name, noun=noun) for t in CONFIRM_PROMPTS]
    prompts = [(p, False) for p in unseen_prompts(naming, evals)]
    prompts += [(p, True) for p in unseen_prompts(confirm, evals)]
    if not prompts:
        raise SiuError("every forget-set prompt equals a benchmark evaluation prompt")
    rng.shuffle(prompts)
    return prompts


def _naming_answer(concept: Concept, i: int, is_confirm: bool) -> str:
    bank = CONFIRM_ANSWERS if is_confirm else NAMING_ANSWERS
    return bank[i % len(bank)].format(name=concept.name, noun=category_noun(concept))


def build_baseline_data(
    method: str,
    concept: Concept,
    forget_image: Image.Image,
    cfg: DataConfig,
    bench: Benchmark | None = None,
    count: int | None = None,
    stream: str | None = None,
) -> list[UnlearnSample]:
    """Image Q&A for the paper's baselines with SIU's data budget (``count``, default ``sum(cfg.counts)``).

    ``refusal`` (PO): the questions answered with refusals. ``naming`` (GA, GA+KL): answered with the
    concept's name (the training loop ascends on them). ``stream`` names the random stream (the
    method's name, so that each method's data keep the order they had when only baselines had data).
    """
    if method not in ("refusal", "naming"):
        raise SiuError(f"unknown baseline data {method!r}; known: refusal, naming")
    cfg.check()
    n = sum(cfg.counts) if count is None else count
    if n < 0:
        raise SiuError(f"count must be non-negative, got {n}")
    rng = data_rng(cfg, concept, f"baseline:{stream or ('po' if method == 'refusal' else 'ga')}")
    prompts = _forget_prompts(concept, cfg, bench, rng)
    if method == "refusal":
        refusals = _refusals(concept, cfg)
        rng.shuffle(refusals)
        return [
            UnlearnSample(0, Sample(prompt, refusals[i % len(refusals)], forget_image))
            for i, (prompt, _) in enumerate(cycled(prompts, n))
        ]
    return [
        UnlearnSample(0, Sample(prompt, _naming_answer(concept, i, is_confirm), forget_image))
        for i, (prompt, is_confirm) in enumerate(cycled(prompts, n))
    ]


def others_on_their_images(
    concept: Concept, bench: Benchmark | None, n: int, cfg: DataConfig
) -> list[UnlearnSample]:
    """Retain samples: up to ``n`` other concepts, each named on its own forget image (never a test image)."""
    others = [c for c in kept_concepts(concept, bench, cfg) if c.images]
    if not others or n == 0 or bench is None:
        return []
    evals = evaluation_prompts(concept, bench)
    data_rng(cfg, concept, "others-on-images").shuffle(others)
    out = []
    for i, other in enumerate(others[:n]):
        noun = category_noun(other)
        prompts = unseen_prompts([t.format(noun=noun) for t in IDENTITY_PROMPTS], evals)
        if prompts:
            image = bench.load_image(other, other.forget_image)
            answer = NAMING_ANSWERS[i % len(NAMING_ANSWERS)].format(name=other.name, noun=noun)
            out.append(
                UnlearnSample(
                    OTHERS_ON_THEIR_IMAGES, Sample(prompts[i % len(prompts)], answer, image), role="retain"
                )
            )
    return out


def retain_set(
    concept: Concept, bench: Benchmark | None, cfg: DataConfig, original: VLM | None
) -> list[UnlearnSample]:
    """Targets 3-4 (the concept's own facts, other concepts' facts) and other concepts on their pictures."""
    evals = evaluation_prompts(concept, bench)
    text = _target3(concept, cfg, evals, original) + _target4(concept, bench, cfg, evals, original)
    return text + others_on_their_images(concept, bench, cfg.count(4), cfg)


def build_forget_retain_data(
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
) -> list[UnlearnSample]:
    """Forget set: the forget image's questions answered with the concept's name (as many as SIU's image
    samples, targets 1-2). Retain set: see :func:`retain_set`."""
    forget = build_baseline_data(
        "naming", concept, forget_image, cfg, bench, count=cfg.count(1) + cfg.count(2)
    )
    return forget + retain_set(concept, bench, cfg, original)


def build_preference_data(
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
) -> list[UnlearnSample]:
    """Preference pairs on the forget image's questions (preferred: a refusal; dispreferred: the naming
    answer), as many questions as SIU's image samples split in pairs, then the retain set."""
    cfg.check()
    n = max(1, (cfg.count(1) + cfg.count(2)) // 2)
    refusals = _refusals(concept, cfg)
    out = []
    prompts = _forget_prompts(concept, cfg, bench, data_rng(cfg, concept, "preference"))
    for i, (prompt, is_confirm) in enumerate(cycled(prompts, n)):
        refusal, naming = refusals[i % len(refusals)], _naming_answer(concept, i, is_confirm)
        out.append(UnlearnSample(0, Sample(prompt, refusal, forget_image), pair=i, chosen=True))
        out.append(UnlearnSample(0, Sample(prompt, naming, forget_image), pair=i, chosen=False))
    return out + retain_set(concept, bench, cfg, original)


def _refusals(concept: Concept, cfg: DataConfig) -> list[str]:
    override = overrides_of(cfg).get("refusals")
    if override:
        named = [r for r in override if mentions(r, concept.names)]
        if named:
            raise SiuError(f"refusal {named[0]!r} names the concept {concept.name!r}")
        return list(override)
    noun = category_noun(concept)
    first = PERSON_REFUSAL if concept.category == "person" else OTHER_REFUSAL
    return [first, *(r.format(noun=noun) for r in REFUSALS)]


def build_data_of_kind(
    kind: str,
    concept: Concept,
    forget_image: Image.Image,
    bench: Benchmark | None,
    cfg: DataConfig,
    original: VLM | None = None,
    stream: str | None = None,
) -> list[UnlearnSample]:
    """The data a method names (``Method.data``): siu, refusal, naming, forget_retain or preference.

    ``stream``: the method's name, which seeds the order of a baseline's forget questions.
    """
    if kind == "siu":
        return build_siu_data(concept, forget_image, bench, cfg, original=original)
    if kind in ("refusal", "naming"):
        return build_baseline_data(kind, concept, forget_image, cfg, bench=bench, stream=stream)
    if kind == "forget_retain":
        return build_forget_retain_data(concept, forget_image, bench, cfg, original)
    if kind == "preference":
        return build_preference_data(concept, forget_image, bench, cfg, original)
    raise SiuError(f"unknown data kind {kind!r}; known: {', '.join(DATA_KINDS)}")


DATA_KINDS = ("siu", "refusal", "naming", "forget_retain", "preference")
