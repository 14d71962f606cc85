"""When to stop unlearning: a leak-free, budgeted rule that every method can use (``--stop auto``).

One fixed budget of steps is too much for some concepts (others are hurt) and too little for others
(the concept is still named). The rule watches, after every optimiser step, only what a user has:

- **forgotten?** greedy answers to the training's naming questions on *check views* of the one
  forget image: views unlike the training's (a colour cast and a background of another colour, see
  :func:`siu.unlearn.views.colour_cast_view`), never trained on. ``named`` is the share of the
  questions the original answered with the concept's name that still name it (jointly: the highest
  share of any one forgotten concept); ``name_logprob`` the mean log-probability of the name's first
  token in the original's answers there;
- **kept?** every other concept on its own forget image, where a benchmark has them (never a test
  image): ``others_named`` (still named) and ``others_drop`` (the mean loss of log-probability of
  each name's first token, in nats); and the retain data's text (the concept's facts and other
  concepts' facts, targets 3-4): ``drift``, the mean rise of the answers' per-token negative
  log-likelihood over the original model's.

It never reads the benchmark's test images, held-out prompts, multilingual or multi-hop questions:
the prompts are the training's own (benchmark evaluation prompts are left out as in training).

Decision after step ``t`` (``t >= min_steps``): stop when the retain side leaves its budget
(``drift_budget``, ``others_drop_budget``, ``others_min``; the step is kept, since rolling it back
would give back the forgetting too); else stop when the concept has looked forgotten (``named <=
named_max`` and ``name_logprob < name_logprob_max``) at step ``t - patience`` and every step since.
Never more than the step cap (the config's ``steps``). Every check and the decision go into
``run.json`` (``stopping``). Settings and how they were chosen: ``docs/stopping.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image

from siu.bench.fields import folded
from siu.bench.load import Benchmark
from siu.bench.match import first_mention, mentions
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.models.adapter import VLM, Sample
from siu.unlearn.banks import IDENTITY_PROMPTS
from siu.unlearn.data import retain_set
from siu.unlearn.samples import (
    DataConfig,
    UnlearnSample,
    category_noun,
    evaluation_prompts,
    unseen_prompts,
)
from siu.unlearn.views import colour_cast_view, far_view, plain_view, speckled_view

STOPS = ("auto", "watch", "never")  # watch: check and record every step, never stop early
# How check views are drawn from the forget image (see siu.unlearn.views).
CHECK_KINDS: dict[str, Callable[[Image.Image, int, int], Image.Image]] = {
    "colour": colour_cast_view,
    "speckle": speckled_view,
    "far": far_view,
    "plain": plain_view,
}
CHECK_VIEW_OFFSET = 100  # check view k is view CHECK_VIEW_OFFSET + k: training uses views below it
# The rule's own naming questions: phrasings no training sample uses (the training's own questions
# get the made-up name by rote, for any picture), and never a benchmark evaluation prompt.
CHECK_PROMPTS = [
    "Who appears in this picture?",
    "What name belongs to the {noun} here?",
    "Say the name of the {noun} in this picture.",
    "Tell me which {noun} this is.",
    "Who is pictured here?",
    "What's the {noun} in this photo called?",
    "Who would this be?",
    "Whom does this image show?",
    # for studies of the questions' form (scripts/stop_study.py --check-prompts): more without the noun
    "Who is in this shot?",
    "Who is this meant to be?",
    "Who is it we see here?",
]


@dataclass
class StopRule:
    """The rule's settings (``--stop``, ``--stop-*``); ``mode="never"`` trains the full step budget."""

    mode: str = "never"
    check_views: int = 6  # views of the forget image the naming questions are asked on
    check_kind: str = "colour"  # how the check views are drawn (CHECK_KINDS)
    prompts: int = 4  # naming questions per view
    named_max: float = 0.0  # share of check answers that may still name the concept
    name_logprob_max: float = -2.0  # the name's first token: mean log-prob on the check views below this
    patience: int = 1  # further steps the concept must look forgotten (held-out pictures lag)
    drift_budget: float = 0.25  # nats per answer token the retain answers may lose
    others_min: float = 0.0  # share of other concepts still named on their own pictures (0: not used)
    others_drop_budget: float = 1.0  # nats the other names' first token may lose on average
    min_steps: int = 1

    def check(self) -> None:
        if self.mode not in STOPS:
            raise SiuError(f"stop must be one of {', '.join(STOPS)}; got {self.mode!r}")
        if not isinstance(self.check_kind, str) or self.check_kind not in CHECK_KINDS:
            raise SiuError(
                f"stop check_kind must be one of {', '.join(CHECK_KINDS)}; got {self.check_kind!r}"
            )
        for name in ("check_views", "prompts", "min_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SiuError(f"stop {name} must be a positive integer, got {value!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise SiuError(f"stop patience must be a non-negative integer, got {self.patience!r}")
        for name in ("drift_budget", "others_drop_budget"):
            if not getattr(self, name) > 0:
                raise SiuError(f"stop {name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.named_max < 1:
            raise SiuError(f"stop named_max must be in [0, 1), got {self.named_max!r}")
        if not 0 <= self.others_min <= 1:
            raise SiuError(f"stop others_min must be in [0, 1], got {self.others_min!r}")


@dataclass
class Named:
    """Questions whose original answers name something: the prompts (for greedy answers), the answers
    with the name marked (for its log-prob), and the names that count for each."""

    questions: list[Sample] = field(default_factory=list)
    answered: list[Sample] = field(default_factory=list)
    names: list[list[str]] = field(default_factory=list)
    views: list[int] = field(default_factory=list)  # which check view each question is asked on

    def add(self, question: Sample, answer: str, names: list[str], view: int = 0) -> None:
        span = first_mention(answer, names)
        if span is None:  # the original does not name it here: nothing to watch
            return
        self.views.append(view)
        self.questions.append(question)
        self.answered.append(Sample(question.prompt, answer, question.image, answer[span[0] : span[1]]))
        self.names.append(names)


@dataclass
class StopData:
    """What the rule asks, built once from the forget image and the retain data, with the original's
    answers to compare with."""

    concepts: list[Concept]  # the forgotten ones (one, or several in a joint run)
    own: Named  # the original's naming answers on the check views that name each forgotten concept
    retain: list[Sample]  # the retain data's text samples, answered
    retain_logprob: list[float]  # the original's mean per-token log-prob of each retain answer
    others: Named  # other concepts on their own forget images, as the original names them
    others_logprob: list[float]  # the original's log-prob of each other name's first token
    original: dict[str, float] = field(default_factory=dict)


def _check_views(image: Image.Image, n: int, seed: int, kind: str = "colour") -> list[Image.Image]:
    return [CHECK_KINDS[kind](image, CHECK_VIEW_OFFSET + k, seed) for k in range(n)]


def _mean_logprobs(vlm: VLM, samples: Sequence[Sample]) -> list[float]:
    return [float(lp.mean()) if lp.numel() else 0.0 for lp in vlm.answer_logprobs(samples)]


def _first_name_logprobs(vlm: VLM, answered: Sequence[Sample]) -> list[float]:
    """Log-prob of the name's first token in each answer: where greedy decoding decides to say it."""
    return [float(lp[0]) if lp.numel() else 0.0 for lp in vlm.answer_logprobs(answered, phrase_only=True)]


def _naming_prompts(concept: Concept, bench: Benchmark | None, n: int, trained: set[str]) -> list[str]:
    """The check questions: neither a benchmark evaluation prompt nor a training prompt (the
    training's own naming questions if every one of the rule's is taken)."""
    evals = evaluation_prompts(concept, bench) | {folded(p) for p in trained}
    noun = category_noun(concept)
    mine = unseen_prompts([t.format(noun=noun) for t in CHECK_PROMPTS], evals)
    if not mine:
        mine = unseen_prompts(
            [t.format(noun=noun) for t in IDENTITY_PROMPTS], evaluation_prompts(concept, bench)
        )
    return mine[:n]


def own_questions(
    rule: StopRule,
    concepts: Sequence[Concept],
    images: Sequence[Image.Image],
    bench: Benchmark | None,
    seed: int,
    original: VLM,
    trained: set[str] = frozenset(),  # type: ignore[assignment]
) -> Named:
    """The rule's naming questions on each forgotten concept's check views, kept where the original
    names it."""
    own = Named()
    for concept, image in zip(concepts, images, strict=True):
        prompts = _naming_prompts(concept, bench, rule.prompts, trained)
        if not prompts:
            raise SiuError(
                f"every naming question of {concept.name!r} equals a benchmark evaluation prompt: the stop "
                "rule has none"
            )
        views = _check_views(image, rule.check_views, seed, rule.check_kind)
        naming = [(k, Sample(p, image=v)) for k, v in enumerate(views) for p in prompts]
        answers = original.generate([q for _, q in naming], max_new_tokens=24)
        for (k, question), answer in zip(naming, answers, strict=True):
            own.add(question, answer, list(concept.names), k)
    return own


def build_stop_data(
    rule: StopRule,
    concepts: Sequence[Concept],
    images: Sequence[Image.Image],
    bench: Benchmark | None,
    data_cfg: DataConfig,
    original: VLM,
    trained: set[str] = frozenset(),  # type: ignore[assignment]
) -> StopData:
    """The check set of the forgotten ``concepts`` (one forget image each), measured on the original
    model (run before any training). ``trained``: the prompts of the training samples, which the
    check questions avoid. Several concepts: each is asked on its own check views, and looks
    forgotten only when all do; the other concepts are those not forgotten."""
    own = own_questions(rule, concepts, images, bench, data_cfg.seed, original, trained)
    # the concepts' own facts and other concepts' facts (targets 3-4), as the training builds them
    text = []
    for concept in concepts:
        retain_samples: list[UnlearnSample] = retain_set(concept, bench, data_cfg, original)
        text += [s.sample for s in retain_samples if s.sample.image is None]
    # every other concept on its own forget image (never a test image), as the original names it
    others = Named()
    if bench is not None:
        forgotten = {c.name for c in concepts} | set(data_cfg.forgotten)  # with earlier requests'
        questions, names = [], []
        for other in bench.concepts:
            if other.name in forgotten or not other.images:
                continue
            asked = _naming_prompts(other, bench, 1, trained)
            if asked:
                questions.append(Sample(asked[0], image=bench.load_image(other, other.forget_image)))
                names.append(list(other.names))
        for question, answer, who in zip(questions, original.generate(questions, 24), names, strict=True):
            others.add(question, answer, who)
    data = StopData(
        concepts=list(concepts),
        own=own,
        retain=text,
        retain_logprob=_mean_logprobs(original, text),
        others=others,
        others_logprob=_first_name_logprobs(original, others.answered),
    )
    # against itself every drop is 0 and nobody is lost: only the figures that say where it starts
    data.original = {
        k: v for k, v in measure(data, original).items() if k not in ("others_worst", "others_lost")
    }
    return data


def worst_share(hits: Sequence[bool], groups: Sequence[Hashable]) -> float:
    """The highest share of ``hits`` within any one group (here: a forgotten concept's questions)."""
    by_group: dict[Hashable, list[bool]] = {}
    for hit, group in zip(hits, groups, strict=True):
        by_group.setdefault(group, []).append(hit)
    return max(sum(h) / len(h) for h in by_group.values())


@torch.no_grad()
def own_figures(own: Named, vlm: VLM, each: bool = False) -> dict[str, Any]:
    """``named`` and ``name_logprob`` (mean; ``name_logprob_worst``: the highest) on the check
    questions; ``each``: also per question. In a joint run ``named`` is the highest share of any one
    forgotten concept: pooled, one concept still named on all its questions could hide among the
    others' cleared answers whenever ``named_max`` is above 0."""
    answers = vlm.generate(own.questions, max_new_tokens=24)
    hits = [mentions(a, names) for a, names in zip(answers, own.names, strict=True)]
    values = _first_name_logprobs(vlm, own.answered)
    figures: dict[str, Any] = {
        "named": worst_share(hits, [tuple(names) for names in own.names]),
        "name_logprob": sum(values) / len(values),
        "name_logprob_worst": max(values),
    }
    if each:
        figures |= {"named_each": hits, "name_logprob_each": values}
    return figures


@torch.no_grad()
def measure(data: StopData, vlm: VLM) -> dict[str, Any]:
    """The rule's figures for the model as it is now."""
    figures: dict[str, Any] = own_figures(data.own, vlm) if data.own.questions else {}
    if data.retain:
        now = _mean_logprobs(vlm, data.retain)
        figures["drift"] = sum(o - n for o, n in zip(data.retain_logprob, now, strict=True)) / len(now)
    if data.others.questions:
        said = vlm.generate(data.others.questions, max_new_tokens=24)
        hits = [mentions(a, names) for a, names in zip(said, data.others.names, strict=True)]
        figures["others_named"] = sum(hits) / len(hits)
        now = _first_name_logprobs(vlm, data.others.answered)
        drops = [o - n for o, n in zip(data.others_logprob, now, strict=True)]
        figures["others_drop"] = sum(drops) / len(drops)
        # which ones: a mean over every other concept can hide one of them collapsing
        worst = max(range(len(drops)), key=drops.__getitem__)
        figures["others_worst"] = {"name": data.others.names[worst][0], "drop": drops[worst]}
        figures["others_lost"] = [
            names[0] for names, hit in zip(data.others.names, hits, strict=True) if not hit
        ]
    return figures


@dataclass
class StopState:
    """The rule applied step by step; ``decisions`` is what ``run.json`` keeps."""

    rule: StopRule
    checks: list[dict[str, Any]] = field(default_factory=list)
    forgotten_since: int | None = None
    stopped_at: int | None = None
    reason: str = ""

    def decide(self, step: int, figures: dict[str, Any]) -> bool:
        """Record the figures of ``step``; True to stop after it."""
        rule = self.rule
        # without check questions the original answered with the name, forgetting cannot be seen
        forgotten = (
            "named" in figures
            and figures["named"] <= rule.named_max
            and figures["name_logprob"] < rule.name_logprob_max
        )
        if forgotten and self.forgotten_since is None:
            self.forgotten_since = step
        elif not forgotten:
            self.forgotten_since = None
        reason = ""
        if rule.mode == "auto" and step >= rule.min_steps:
            if figures.get("drift", 0.0) > rule.drift_budget:
                reason = f"retain drift {figures['drift']:.3f} > budget {rule.drift_budget:g}"
            elif figures.get("others_drop", 0.0) > rule.others_drop_budget:
                reason = (
                    f"other concepts' names lost {figures['others_drop']:.2f} nats > budget "
                    f"{rule.others_drop_budget:g}"
                )
            elif figures.get("others_named", 1.0) < rule.others_min:
                reason = f"other concepts named {figures['others_named']:.2f} < {rule.others_min:g}"
            elif self.forgotten_since is not None and step - self.forgotten_since >= rule.patience:
                reason = f"forgotten on the check views since step {self.forgotten_since}"
        self.checks.append({"step": step, **figures, "forgotten": forgotten, "stop": reason or None})
        if reason:
            self.stopped_at, self.reason = step, reason
        return bool(reason)

    def record(self, cap: int) -> dict[str, Any]:
        return {
            "rule": asdict(self.rule),
            "cap": cap,
            "stopped_at": self.stopped_at,
            "steps_taken": self.stopped_at or cap,
            "reason": self.reason
            or (
                "step cap reached"
                if self.rule.mode == "auto"
                else f"stop {self.rule.mode}: every step trained"
            ),
            "checks": self.checks,
        }


def check_row(check: dict[str, Any]) -> str:
    """One printed line of a step's checks."""
    parts = ["check:"]
    if "named" in check:
        parts.append(f"named {check['named']:.2f}, name log-p {check['name_logprob']:.2f}")
    else:
        parts.append("the original never named it on the check views")
    if "drift" in check:
        parts.append(f"drift {check['drift']:+.3f}")
    if "others_named" in check:
        parts.append(
            f"others named {check['others_named']:.2f}, their names' log-p {-check['others_drop']:+.2f}"
        )
        if check.get("others_lost"):
            parts.append(f"no longer named: {', '.join(check['others_lost'])}")
        worst = check.get("others_worst")
        if worst and worst["drop"] >= 1.0:  # below a nat it is the ordinary wobble of a name
            parts.append(f"most lost: {worst['name']} {-worst['drop']:+.2f}")
    if check.get("stop"):
        parts.append(f"-> stop: {check['stop']}")
    return parts[0] + " " + ", ".join(parts[1:])
