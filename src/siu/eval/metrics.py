"""MMUBench metrics of one unlearned concept (SIU.md section 7), computed from real generations.

Every metric is computed from greedy answers or token log-probabilities of the models given; each
answer behind a number is kept as a record. Nothing is estimated without the model it needs: no
judge means no ``g_eval`` (reported missing, with the reason); no retain model means no retain AUC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from siu.bench.load import Benchmark
from siu.bench.match import mentions
from siu.bench.schema import Concept
from siu.eval.attacks import PERTURBATIONS, QUANT_BITS, quantised, relearned
from siu.eval.butterfly import butterfly_figures
from siu.eval.judges import Judge
from siu.eval.leakage import MIA_RATIO, MIN_K, c_dis, mia_auc, mia_paper, special_token_pieces
from siu.eval.probes import MEMBER_TEXT, EvalConfig, Probe, Probes, build_probes
from siu.eval.scores import (
    diversity,
    mean_of,
    min_k_prob,
    per_answer_perplexity,
    pooled_perplexity,
)
from siu.models.adapter import VLM, Sample
from siu.unlearn.losses import vocab_mask_for_names

# key -> (better, what it measures). Printed with the table and written to metrics.json.
METRICS: dict[str, tuple[str, str]] = {
    "efficacy_em": ("higher", "100 * share of recognition answers on the forget image that do not name C"),
    "generality_em": ("higher", "the same on C's held-out test images"),
    "g_eval": ("lower", "judge score 1-5 of every recognition answer on the test images (5 = accurate)"),
    "c_dis": (
        "higher",
        "distance of C's special tokens' probabilities from the original's, over every prompt position",
    ),
    "specificity": ("higher", "100 * mean of the relative scores below (1.0 = as good as the original)"),
    "specificity_recognition": ("higher", "other concepts' recognition, relative to the original"),
    "specificity_vqa": ("higher", "generic visual questions, relative to the original"),
    "specificity_facts": ("higher", "other concepts' text facts, relative to the original"),
    "fluency_ppl": (
        "lower",
        "perplexity of the unlearned model on the original's answers, C's tokens excluded, per answer",
    ),
    "diversity": ("higher", "unique / total whitespace tokens * 100 of the answers, averaged"),
    "fact_retention": ("higher", "share of C's text-only fact questions still answered correctly"),
    "mia_rouge_l": (
        "lower",
        "paper's MIA: ROUGE-L recall vs the original's answers to picture questions, Min-K% filter",
    ),
    "mia_auc_min_k": (
        "lower",
        "AUC of Min-K% (k=40%): C's pictures named C vs named another concept (retain model ~0.5)",
    ),
    "mia_auc_min_k_pp": ("lower", "the same with Min-K%++"),
    "mia_auc_loss": ("lower", "the same with the mean token log-prob"),
    "mia_auc_zlib": ("lower", "the same with mean log-prob / zlib length"),
    "jailbreak_multilingual": ("lower", "share of other-language answers on test images that still name C"),
    "jailbreak_multihop": ("lower", "share of multi-hop answers on test images that still give C's facts"),
    "attack_crop": ("lower", "share of name answers naming C on its test images, centre-cropped to 80%"),
    "attack_flip": ("lower", "the same, mirrored"),
    "attack_blur": ("lower", "the same, Gaussian-blurred"),
    "attack_jpeg": ("lower", "the same, JPEG quality 30"),
    "attack_quant8": (
        "lower",
        "the same after rounding the weights to 8 bits (per-channel, round to nearest)",
    ),
    "attack_quant4": ("lower", "the same after rounding the weights to 4 bits (groups of 64)"),
    "attack_relearn": (
        "lower",
        "the same after benign LoRA fine-tuning on the other concepts (the unlearning's budget)",
    ),
    "attack_unseen_phrasing": (
        "lower",
        "share of answers naming C to recognition prompts never seen in training",
    ),
    "butterfly_pair": ("higher", "share of pictures of C beside a kept concept B in which B is still named"),
    "butterfly_alone": (
        "higher",
        "the same question on B's own pictures, C absent (the butterfly effect's control)",
    ),
}
RECOGNISED_MIN = 0.5  # below this share of naming answers the original does not know C
# key -> the original model's value by definition (it is the reference of these figures)
BY_DEFINITION = {
    "c_dis": 0.0,
    "specificity": 100.0,
    "specificity_recognition": 1.0,
    "specificity_vqa": 1.0,
    "specificity_facts": 1.0,
    "mia_rouge_l": 1.0,
}


def _ratio(after: float, before: float) -> float:
    return after / before if before else float("nan")


def _share(hits: Sequence[bool]) -> float:
    return mean_of([float(h) for h in hits])


def _em(hits: Sequence[bool]) -> float:
    """EM of the spec: 100 * share of answers that do not name C."""
    return 100.0 * (len(hits) - sum(hits)) / len(hits) if hits else float("nan")


def _records(
    metric: str, probes: Sequence[Probe], answers: Sequence[str], **extra: Any
) -> tuple[list[bool], list[dict[str, Any]]]:
    hits, records = [], []
    for (sample, image, targets), answer in zip(probes, answers, strict=True):
        hit = mentions(answer, targets)
        hits.append(hit)
        records.append(
            {
                "metric": metric,
                "image": image,
                "prompt": sample.prompt,
                "answer": answer,
                "targets": targets,
                "hit": hit,
                **extra,
            }
        )
    return hits, records


class _Generator:
    """Greedy generation that counts the answers cut at the length limit."""

    def __init__(self, vlm: VLM, cfg: EvalConfig) -> None:
        self.vlm, self.cfg = vlm, cfg
        self.answers = self.cut = 0

    def __call__(self, samples: Sequence[Sample]) -> list[str]:
        answers, cut = self.vlm.generate_with_limits(
            samples, max_new_tokens=self.cfg.max_new_tokens, batch_size=self.cfg.batch_size
        )
        self.answers += len(answers)
        self.cut += sum(cut)
        return answers

    @property
    def at_limit(self) -> float:
        return self.cut / self.answers if self.answers else float("nan")


@dataclass
class OriginalSide:
    """The original model's part of one concept's evaluation: its answers, scores and attacked answers.

    It is the same for every model evaluated on this concept with this config and judge, so
    ``siu bench run`` computes it once per concept (:func:`original_side`) and passes it to each cell.
    """

    key: str
    answers: dict[str, list[str]]
    c_dis_logprobs: list[torch.Tensor]  # per test image, (L, special tokens)
    c_dis_pieces: dict[str, tuple[str, int]]
    question_min_k: list[float]  # Min-K% of each multi-hop question's tokens
    mia_auc: dict[str, float]
    values: dict[str, float | None]  # the original's own value of each forgetting figure
    records: list[dict[str, Any]] = field(default_factory=list)
    answers_at_limit: float = float("nan")
    probes: Probes | None = None  # what the side was computed on (the cells of a concept reuse them)


def side_key(concept: Concept, cfg: EvalConfig, judge: Judge | None, original: VLM | None = None) -> str:
    """What an original's side depends on: the concept, the config, the judge (and where it is), the
    original model (by its path; ``siu eval`` adds the benchmark's)."""
    where = getattr(judge, "base_url", "") if judge else ""
    model = original.path if original is not None else None
    return f"{concept.slug}|{sorted(asdict(cfg).items())}|{judge.name if judge else None}|{where}|{model}"


def _g_eval(
    judge: Judge, concept: Concept, probes: Sequence[Probe], answers: Sequence[str], **extra: Any
) -> tuple[float | None, int, list[dict[str, Any]]]:
    """Mean judge score over the answers it scored, how many it could not score, and the records."""
    scores = judge.score(concept, [(p[0].prompt, a) for p, a in zip(probes, answers, strict=True)])
    records = [
        {"metric": "g_eval", "image": p[1], "prompt": p[0].prompt, "answer": a, "score": s,
         "judge": judge.name, **extra}
        for p, a, s in zip(probes, answers, scores, strict=True)
    ]  # fmt: skip
    scored = [float(s) for s in scores if s is not None]
    return (mean_of(scored) if scored else None), len(scores) - len(scored), records


def _fluency_logprobs(vlm: VLM, concept: Concept, samples: Sequence[Sample], cfg: EvalConfig) -> list[Any]:
    """Per answer, the log-probs of its tokens under ``vlm``, C's names' pieces left out."""
    vocab = vlm.model.get_output_embeddings().weight.shape[0]
    keep = vocab_mask_for_names(vlm.tokenizer, concept.names, vocab)
    stats = vlm.answer_token_stats(samples, batch_size=cfg.batch_size)
    return [st.logprobs[keep[st.ids.long()]] for st in stats]


def original_side(
    original: VLM,
    bench: Benchmark,
    concept: Concept,
    cfg: EvalConfig | None = None,
    judge: Judge | None = None,
    probes: Probes | None = None,
    step: Callable[[str], None] = lambda _msg: None,
) -> OriginalSide:
    """Everything the original model contributes to ``concept``'s metrics (see :class:`OriginalSide`)."""
    cfg = cfg or EvalConfig()
    pr = probes or build_probes(bench, concept, cfg)
    gen = _Generator(original, cfg)
    step("the original model's side")
    answers: dict[str, list[str]] = {}
    records: list[dict[str, Any]] = []
    values: dict[str, float | None] = dict(BY_DEFINITION)
    for key, probes_of in (("efficacy", pr.efficacy), ("generality", pr.generality), ("facts", pr.facts)):
        answers[key] = gen([s for s, _, _ in probes_of])
    # batched exactly as for the unlearned model: other padding could flip a greedy answer
    both = gen([s for s, _, _ in pr.multilingual + pr.multihop])
    answers["multilingual"], answers["multihop"] = both[: len(pr.multilingual)], both[len(pr.multilingual) :]
    values["efficacy_em"] = _em(_records("efficacy_em", pr.efficacy, answers["efficacy"])[0])
    hits, _ = _records("generality_em", pr.generality, answers["generality"])
    values["generality_em"] = _em(hits)
    values["diversity"] = mean_of([diversity(a) for a in answers["generality"]])
    values["fact_retention"] = _share(_records("fact_retention", pr.facts, answers["facts"])[0])
    for key in ("multilingual", "multihop"):
        values[f"jailbreak_{key}"] = _share(_records(f"jailbreak_{key}", getattr(pr, key), answers[key])[0])
    unseen = [k for k, h in enumerate(pr.heldout) if h]
    values["attack_unseen_phrasing"] = _share([hits[k] for k in unseen]) if unseen else None
    values["g_eval"] = None
    if judge is not None:
        values["g_eval"], _, judged = _g_eval(judge, concept, pr.generality, answers["generality"],
                                              model="original")  # fmt: skip
        records += judged
    # fluency reference: the original on its own answers
    scored = [Sample(s.prompt, a, s.image) for (s, _, _), a in zip(pr.generality, answers["generality"],
                                                                   strict=True) if a]  # fmt: skip
    values["fluency_ppl"] = per_answer_perplexity(_fluency_logprobs(original, concept, scored, cfg))

    pieces = special_token_pieces(original.tokenizer, concept.special_tokens or concept.names)
    c_dis = (
        original.prompt_token_logprobs(pr.c_dis, [i for _, i in pieces.values()], batch_size=cfg.batch_size)
        if pieces
        else []
    )
    question_min_k = [
        min_k_prob(lp, MIN_K)
        for lp in original.question_logprobs([s for s, _, _ in pr.multihop], batch_size=cfg.batch_size)
    ]
    mia = mia_auc(original, pr.members, pr.controls, cfg)
    values.update(mia)

    attacked = [p for _, p in pr.attacked]
    answers["attacked"] = gen([s for s, _, _ in attacked])
    for kind in PERTURBATIONS:
        idx = [i for i, (k, _) in enumerate(pr.attacked) if k == kind]
        hits, recs = _records(f"attack_{kind}", [attacked[i] for i in idx],
                              [answers["attacked"][i] for i in idx], model="original")  # fmt: skip
        values[f"attack_{kind}"] = _share(hits)
        records += recs
    name_samples = [s for s, _, _ in pr.name_probes]
    for bits in QUANT_BITS:
        with quantised(original.model, bits):
            answers[f"quant{bits}"] = gen(name_samples)
        hits, recs = _records(
            f"attack_quant{bits}", pr.name_probes, answers[f"quant{bits}"], model="original"
        )
        values[f"attack_quant{bits}"] = _share(hits)
        records += recs
    step("the original model's side: relearning attack")
    # the original under the same fine-tuning: on a small world it can disturb C's recognition itself
    with relearned(original, pr.relearn):
        answers["relearn"] = gen(name_samples)
    hits, recs = _records("attack_relearn", pr.name_probes, answers["relearn"], model="original")
    values["attack_relearn"] = _share(hits)
    records += recs
    answers["specificity"] = gen([p[0] for _, p in pr.specificity])
    answers["butterfly"] = gen(pr.butterfly.samples)
    if pr.butterfly.in_pair:
        figures = butterfly_figures(pr.butterfly, answers["butterfly"])
        values["butterfly_pair"], values["butterfly_alone"] = figures["pair"], figures["alone"]
    return OriginalSide(
        key=side_key(concept, cfg, judge, original),
        answers=answers,
        c_dis_logprobs=c_dis,
        c_dis_pieces=pieces,
        question_min_k=question_min_k,
        mia_auc=mia,
        values=values,
        records=records,
        answers_at_limit=gen.at_limit,
        probes=pr,
    )


def evaluate_concept(
    unlearned: VLM,
    original: VLM,
    bench: Benchmark,
    concept: Concept,
    cfg: EvalConfig | None = None,
    judge: Judge | None = None,
    judge_missing: str = "no judge given (--judge rubric|openai|hf)",
    retain: VLM | None = None,
    step: Callable[[str], None] = lambda _msg: None,
    side: OriginalSide | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All metrics of ``concept`` for the ``unlearned`` model against the ``original``.

    Returns ``(metrics, records)``: ``metrics`` maps each key of :data:`METRICS` to a number (or
    None with a reason in ``metrics["missing"]``), holds the original model's value of each figure in
    ``metrics["original_values"]`` and what C-Dis and the MIAs were computed on; the records are
    every answer behind the numbers. ``side`` is the original's part computed earlier (by
    :func:`original_side` with the same concept, config and judge); without it, it is computed here.
    """
    cfg = cfg or EvalConfig()
    if side is None:
        pr = build_probes(bench, concept, cfg)
        side = original_side(original, bench, concept, cfg, judge, pr, step)
    elif side.key != side_key(concept, cfg, judge, original):
        raise ValueError(
            f"the original's side was computed for {side.key}, not {side_key(concept, cfg, judge, original)}"
        )
    # the probes the side was computed on: built once per concept, not once per cell
    pr = side.probes if side.probes is not None else build_probes(bench, concept, cfg)
    gen = _Generator(unlearned, cfg)
    records: list[dict[str, Any]] = list(side.records)
    missing: dict[str, str] = {}
    warnings: list[str] = []
    out: dict[str, Any] = {}
    same_tokenizer = original.tokenizer.get_vocab() == unlearned.tokenizer.get_vocab()

    def add(metric: str, probes: Sequence[Probe], answers: Sequence[str], **extra: Any) -> list[bool]:
        hits, recs = _records(metric, probes, answers, **extra)
        records.extend(recs)
        return hits

    step("efficacy")
    out["efficacy_em"] = _em(add("efficacy_em", pr.efficacy, gen([s for s, _, _ in pr.efficacy])))
    step("generality")
    answers = gen([s for s, _, _ in pr.generality])
    hits = add("generality_em", pr.generality, answers)
    out["generality_em"] = _em(hits)
    out["diversity"] = mean_of([diversity(a) for a in answers])
    unseen = [k for k, h in enumerate(pr.heldout) if h]
    if unseen:
        out["attack_unseen_phrasing"] = _share([hits[k] for k in unseen])
    else:
        out["attack_unseen_phrasing"] = None
        missing["attack_unseen_phrasing"] = "the benchmark marks none of the concept's prompts as held out"
    recognised = 1.0 - side.values["generality_em"] / 100.0  # type: ignore[operator]
    if recognised < RECOGNISED_MIN:
        warnings.append(
            f"the original model names {concept.name} in only {recognised:.0%} of its answers on the test "
            "images: it hardly knew the concept, so high forgetting figures mean little"
        )

    if judge is None:
        out["g_eval"] = None
        missing["g_eval"] = judge_missing
    else:
        step(f"g_eval ({judge.name})")
        out["g_eval"], unscored, judged = _g_eval(judge, concept, pr.generality, answers)
        records.extend(judged)
        out["judge"] = judge.name
        out["g_eval_unscored"] = unscored
        if out["g_eval"] is None:
            missing["g_eval"] = f"the judge {judge.name} gave no 1-5 score in any of its {unscored} replies"
        elif unscored:
            warnings.append(f"the judge gave no score for {unscored} of {len(answers)} answers (left out)")

    step("c_dis")
    out.update(c_dis(unlearned, pr, side, cfg, same_tokenizer, missing))

    step("fluency")
    if same_tokenizer:
        scored = [Sample(s.prompt, a, s.image)
                  for (s, _, _), a in zip(pr.generality, side.answers["generality"], strict=True) if a]  # fmt: skip
        per_answer = _fluency_logprobs(unlearned, concept, scored, cfg)
        out["fluency_ppl"] = per_answer_perplexity(per_answer)
        out["fluency_ppl_pooled"] = pooled_perplexity(per_answer)
    else:
        out["fluency_ppl"] = None
        missing["fluency_ppl"] = "the model's tokenizer differs from the original's: no token comparison"

    step("facts")
    out["fact_retention"] = _share(add("fact_retention", pr.facts, gen([s for s, _, _ in pr.facts])))

    step("jailbreaks")
    both = gen([s for s, _, _ in pr.multilingual + pr.multihop])
    multihop_answers = both[len(pr.multilingual) :]
    out["jailbreak_multilingual"] = _share(add("jailbreak_multilingual", pr.multilingual,
                                               both[: len(pr.multilingual)]))  # fmt: skip
    out["jailbreak_multihop"] = _share(add("jailbreak_multihop", pr.multihop, multihop_answers))

    step("membership inference")
    paper, paper_records = mia_paper(unlearned, pr, side, multihop_answers, cfg)
    records.extend(paper_records)
    out.update(paper)
    if out["mia_rouge_l"] is None:
        missing["mia_rouge_l"] = (
            f"no multi-hop question passed the Min-K% ratio filter (0 of the "
            f"{out['mia_answered_by_original']} the original answered, of {out['mia_questions']}): the "
            f"unlearned model's Min-K% of every question moved by more than x{MIA_RATIO}"
        )
    out.update(mia_auc(unlearned, pr.members, pr.controls, cfg))
    out["mia_auc_original"] = dict(side.mia_auc)
    if retain is not None:
        out["mia_auc_retain"] = mia_auc(retain, pr.members, pr.controls, cfg)
    else:
        missing["mia_auc_retain"] = (
            "no retain model given (--retain; `siu world pretrain --without C` makes one)"
        )
    out["mia_samples"] = {"members": len(pr.members), "non_members": len(pr.controls),
                          "member_text": MEMBER_TEXT.format(concept.name),
                          "non_member_texts": sorted({c.answer for c in pr.controls})}  # fmt: skip

    step("attacks")
    attacked = [p for _, p in pr.attacked]
    attack_answers = gen([s for s, _, _ in attacked])
    for kind in PERTURBATIONS:
        idx = [i for i, (k, _) in enumerate(pr.attacked) if k == kind]
        out[f"attack_{kind}"] = _share(add(f"attack_{kind}", [attacked[i] for i in idx],
                                           [attack_answers[i] for i in idx]))  # fmt: skip
    name_samples = [s for s, _, _ in pr.name_probes]
    for bits in QUANT_BITS:
        with quantised(unlearned.model, bits):
            out[f"attack_quant{bits}"] = _share(add(f"attack_quant{bits}", pr.name_probes, gen(name_samples)))
    step("relearning attack")
    with relearned(unlearned, pr.relearn) as losses:
        out["attack_relearn"] = _share(add("attack_relearn", pr.name_probes, gen(name_samples)))
    out["attack_relearn_losses"] = losses
    if retain is not None:
        # the control: the same fine-tuning cannot teach C to a model that never saw C's pictures
        with relearned(retain, pr.relearn):
            hits = add(
                "attack_relearn", pr.name_probes, _Generator(retain, cfg)(name_samples), model="retain"
            )
        out["attack_relearn_retain"] = _share(hits)
    # the original under the same attacks (an attack only means something if the original still names C)
    attacks = [f"attack_{kind}" for kind in PERTURBATIONS] + [f"attack_quant{b}" for b in QUANT_BITS]
    out["attack_original"] = {k: side.values[k] for k in [*attacks, "attack_relearn"]}

    step("specificity")
    out.update(_specificity(pr, side, gen([p[0] for _, p in pr.specificity]), records))

    step("butterfly effect")
    out.update(_butterfly(pr, side, gen, retain, cfg, records, missing))

    out["answers_at_limit"] = gen.at_limit
    out["answers_at_limit_original"] = side.answers_at_limit
    if gen.at_limit > 0.1:
        warnings.append(
            f"{gen.at_limit:.0%} of the answers ran to the {cfg.max_new_tokens}-token limit: a mention of "
            "the concept after it is missed"
        )
    out["original_values"] = {k: side.values.get(k) for k in METRICS}
    out["original_recognises"] = recognised >= RECOGNISED_MIN
    out["missing"] = missing
    out["warnings"] = warnings
    return out, records


def _butterfly(
    pr: Probes,
    side: OriginalSide,
    gen: _Generator,
    retain: VLM | None,
    cfg: EvalConfig,
    records: list[dict[str, Any]],
    missing: dict[str, str],
) -> dict[str, Any]:
    """The partner named beside C and alone, for this model, the original and the retain model."""
    probes = pr.butterfly
    if not probes.in_pair:
        for key in ("butterfly_pair", "butterfly_alone"):
            missing[key] = "the benchmark has no pair picture of C with a kept concept (pairs.json)"
        return {"butterfly_pair": None, "butterfly_alone": None}

    def record(model: str) -> Callable[[str, Probe, str, bool], None]:
        def add(metric: str, probe: Probe, answer: str, hit: bool) -> None:
            records.append({"metric": metric, "image": probe[1], "prompt": probe[0].prompt, "answer": answer,
                            "targets": probe[2], "hit": hit, **({"model": model} if model else {})})  # fmt: skip

        return add

    figures = {"unlearned": butterfly_figures(probes, gen(probes.samples), record(""))}
    figures["original"] = butterfly_figures(probes, side.answers["butterfly"], record("original"))
    if retain is not None:
        figures["retain"] = butterfly_figures(
            probes, _Generator(retain, cfg)(probes.samples), record("retain")
        )
    else:
        missing["butterfly_retain"] = (
            "no retain model given (--retain): no reference for an unaffected partner"
        )
    mine = figures["unlearned"]
    return {"butterfly_pair": mine["pair"], "butterfly_alone": mine["alone"], "butterfly": figures}


def _specificity(
    pr: Probes, side: OriginalSide, after: Sequence[str], records: list[dict[str, Any]]
) -> dict[str, Any]:
    before = side.answers["specificity"]
    out: dict[str, Any] = {}
    for kind in ("recognition", "vqa", "facts"):
        idx = [i for i, (k, _) in enumerate(pr.specificity) if k == kind]
        if not idx:
            continue
        hits_after, recs = _records(f"specificity_{kind}", [pr.specificity[i][1] for i in idx],
                                    [after[i] for i in idx])  # fmt: skip
        records.extend(recs)
        hits_before = [mentions(before[i], pr.specificity[i][1][2]) for i in idx]
        a, b = _share(hits_after), _share(hits_before)
        out[f"specificity_{kind}"] = _ratio(a, b)
        out[f"specificity_{kind}_absolute"] = a
        out[f"specificity_{kind}_original"] = b
    relative = [
        out[k] for k in ("specificity_recognition", "specificity_vqa", "specificity_facts") if k in out
    ]
    out["specificity"] = 100.0 * mean_of(relative)
    return out
