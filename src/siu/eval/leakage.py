"""What is still in the model beyond its answers (SIU.md section 7): C-Dis, the distance of C's
special tokens' probabilities from the original's, and the membership inference attacks (the paper's
ROUGE-L protocol on multi-hop questions, and AUCs of C's pictures named C against named another)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from siu.eval.probes import EvalConfig, Probes
from siu.eval.scores import (
    auc,
    c_dis_distance,
    loss_score,
    mean_of,
    min_k_plus_plus,
    min_k_prob,
    rouge_l_recall,
    zlib_score,
)
from siu.models.adapter import VLM, Sample

if TYPE_CHECKING:
    from siu.eval.metrics import OriginalSide

MIN_K = 0.4
MIA_RATIO = 1.15
MIA_RECALL_FLOOR = 0.1  # the authors count a ROUGE-L recall at or below this as 0 and leave it out


def special_token_pieces(tokenizer: Any, tokens: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Special token -> (its first sub-token as text, id): the first piece of the token written after a
    space, skipping a piece that is only a space marker (SIU.md section 7, C-Dis)."""
    special = set(tokenizer.all_special_ids)
    found: dict[str, tuple[str, int]] = {}
    for token in tokens:
        for i in tokenizer.encode(" " + token, add_special_tokens=False):
            if i in special or not tokenizer.decode([i]).strip():
                continue
            found[token] = (tokenizer.convert_ids_to_tokens(i), i)
            break
    return found


def c_dis(
    unlearned: VLM,
    pr: Probes,
    side: OriginalSide,
    cfg: EvalConfig,
    same_tokenizer: bool,
    missing: dict[str, str],
) -> dict[str, Any]:
    """C-Dis as the authors compute it: per test image and special token, the distance of its first
    sub-token's probabilities over every prompt position; the mean over both."""
    if not same_tokenizer:
        missing["c_dis"] = "the model's tokenizer differs from the original's: no token comparison"
        return {"c_dis": None}
    if not side.c_dis_pieces:
        missing["c_dis"] = "none of the concept's special tokens has a sub-token in the tokenizer"
        return {"c_dis": None}
    ids = [i for _, i in side.c_dis_pieces.values()]
    mine = unlearned.prompt_token_logprobs(pr.c_dis, ids, batch_size=cfg.batch_size)
    if any(a.shape != b.shape for a, b in zip(mine, side.c_dis_logprobs, strict=True)):
        missing["c_dis"] = "the model encodes the prompt to another length than the original"
        return {"c_dis": None}
    per_token = {
        token: [c_dis_distance(o[:, j], u[:, j]) for o, u in zip(side.c_dis_logprobs, mine, strict=True)]
        for j, token in enumerate(side.c_dis_pieces)
    }
    return {
        "c_dis": mean_of([d for ds in per_token.values() for d in ds]),
        "c_dis_detail": {
            "prompt": pr.c_dis_prompt,
            "images": pr.c_dis_images,
            "positions": int(side.c_dis_logprobs[0].shape[0]) if side.c_dis_logprobs else 0,
            "tokens": {
                token: {"piece": piece, "id": i, "mean_distance": mean_of(per_token[token])}
                for token, (piece, i) in side.c_dis_pieces.items()
            },
        },
    }


def mia_paper(
    unlearned: VLM,
    pr: Probes,
    side: OriginalSide,
    answers: Sequence[str],  # the unlearned model's answers to pr.multihop
    cfg: EvalConfig,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The paper's protocol on questions about C's facts asked through the picture (multi-hop): keep a
    question when the ratio of its Min-K% (k=40%) under the two models lies in (1/1.15, 1.15); then
    ROUGE-L recall of the unlearned model's answer against the original's answer to the same question,
    a recall <= 0.1 counted as 0 and zeros left out of the mean (lower = less is still given)."""
    samples = [s for s, _, _ in pr.multihop]
    mine = [min_k_prob(lp, MIN_K) for lp in unlearned.question_logprobs(samples, batch_size=cfg.batch_size)]
    records = []
    kept = comparable = 0
    counted: list[float] = []
    for (s, _, _), orig_mk, my_mk, orig, answer in zip(
        pr.multihop, side.question_min_k, mine, side.answers["multihop"], answers, strict=True
    ):
        recall = rouge_l_recall(answer, orig)
        if math.isnan(recall):  # the original answered nothing: nothing to recall, nothing measured
            continue
        comparable += 1
        ratio = my_mk / orig_mk if orig_mk else (1.0 if my_mk == orig_mk else math.inf)
        if not 1 / MIA_RATIO < ratio < MIA_RATIO:
            continue
        kept += 1
        if recall > MIA_RECALL_FLOOR:
            counted.append(recall)
        records.append(
            {"metric": "mia_rouge_l", "prompt": s.prompt, "original": orig, "answer": answer,
             "rouge_l_recall": recall, "min_k_ratio": ratio}
        )  # fmt: skip
    value: float | None = None
    if kept:
        value = mean_of(counted) if counted else 0.0
    return {"mia_rouge_l": value, "mia_questions": len(samples), "mia_answered_by_original": comparable,
            "mia_kept": kept, "mia_counted": len(counted)}, records  # fmt: skip


def mia_auc(
    vlm: VLM, members: Sequence[Sample], controls: Sequence[Sample], cfg: EvalConfig
) -> dict[str, float]:
    m_stats = vlm.answer_token_stats(members, batch_size=cfg.batch_size)
    c_stats = vlm.answer_token_stats(controls, batch_size=cfg.batch_size)

    def scores(stats: Sequence[Any], samples: Sequence[Sample]) -> dict[str, list[float]]:
        return {
            "mia_auc_min_k": [min_k_prob(s.logprobs, MIN_K) for s in stats],
            "mia_auc_min_k_pp": [min_k_plus_plus(s.logprobs, s.mu, s.sigma, MIN_K) for s in stats],
            "mia_auc_loss": [loss_score(s.logprobs) for s in stats],
            "mia_auc_zlib": [
                zlib_score(s.logprobs, x.answer or "") for s, x in zip(stats, samples, strict=True)
            ],
        }

    m, c = scores(m_stats, members), scores(c_stats, controls)
    return {key: auc(m[key], c[key]) for key in m}
