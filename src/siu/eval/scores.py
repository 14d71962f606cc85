"""Pure scoring functions of the evaluation: membership-inference scores, AUC, ROUGE-L, diversity.

Membership scores take per-token log-probabilities of an answer (higher score = "more member-like"):

* ``min_k_prob``: the mean of the lowest ``floor(k * n)`` (at least one) token log-probs (Min-K%
  Prob, Shi et al.).
* ``min_k_plus_plus``: the same over token scores standardised by the model's own distribution at
  each position, ``(log p(x_t) - mu_t) / sqrt(max(var_t, 1e-6))`` (Min-K%++, Zhang et al.; the
  variance is floored, so a confident position scores at most ~1e3, not 1e7).
* ``loss_score``: the mean token log-prob (minus the loss).
* ``zlib_score``: the mean token log-prob divided by the zlib-compressed length of the text.

``c_dis_distance`` is C-Dis's distance of one special token (SIU.md section 7), and
``per_answer_perplexity`` the authors' fluency aggregation.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence

import torch

MIN_VARIANCE = 1e-6


def mean_of(values: Sequence[float]) -> float:
    """The mean of the values that are numbers (NaN: nothing measured), NaN when none is."""
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def min_k_prob(logprobs: torch.Tensor, k: float = 0.4) -> float:
    """Mean of the ``floor(k * n)`` lowest token log-probs (at least one), as the Min-K% paper."""
    if logprobs.numel() == 0:
        return float("nan")
    n = max(1, math.floor(k * logprobs.numel()))
    return float(torch.sort(logprobs.float()).values[:n].mean())


def min_k_plus_plus(logprobs: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, k: float = 0.4) -> float:
    """Min-K%++: Min-K% over ``(logprob - mu) / sqrt(max(sigma^2, 1e-6))`` per token."""
    scale = sigma.float().square().clamp(min=MIN_VARIANCE).sqrt()
    return min_k_prob((logprobs.float() - mu.float()) / scale, k)


def loss_score(logprobs: torch.Tensor) -> float:
    return float(logprobs.float().mean()) if logprobs.numel() else float("nan")


def zlib_score(logprobs: torch.Tensor, text: str) -> float:
    """Mean token log-prob / zlib-compressed length of the text in bytes."""
    if logprobs.numel() == 0:
        return float("nan")
    return float(logprobs.float().mean()) / max(1, len(zlib.compress(text.encode("utf-8"))))


def c_dis_distance(logp_original: torch.Tensor, logp_unlearned: torch.Tensor) -> float:
    """``|sum_t p_o(t) * log(p_o(t) / p_u(t))|`` over the positions of one prompt, from log-probs.

    This is PyTorch's ``kl_div(log p_u, p_o, reduction="batchmean")`` on a (1, L) row, the authors'
    C-Dis distance of one special token; positions where ``p_o`` is 0 add nothing.
    """
    lo, lu = logp_original.double(), logp_unlearned.double()
    po = lo.exp()
    terms = torch.where(po > 0, po * (lo - lu), torch.zeros_like(po))
    return abs(float(terms.sum()))


def per_answer_perplexity(answers: Sequence[torch.Tensor]) -> float:
    """Mean over answers of ``exp(-mean token log-prob)``; answers without a token are left out."""
    ppl = [math.exp(-float(lp.double().mean())) for lp in answers if lp.numel()]
    return sum(ppl) / len(ppl) if ppl else float("nan")


def pooled_perplexity(answers: Sequence[torch.Tensor]) -> float:
    """``exp(-mean log-prob)`` over the tokens of every answer pooled (longer answers weigh more)."""
    tokens = [lp.double() for lp in answers if lp.numel()]
    return math.exp(-float(torch.cat(tokens).mean())) if tokens else float("nan")


def auc(members: Sequence[float], non_members: Sequence[float]) -> float:
    """Area under the ROC curve of ``score`` separating members (higher) from non-members; ties 1/2."""
    if not members or not non_members:
        return float("nan")
    wins = sum((m > x) + 0.5 * (m == x) for m in members for x in non_members)
    return wins / (len(members) * len(non_members))


_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rouge_l_recall(candidate: str, reference: str) -> float:
    """Longest common subsequence of words / reference length (ROUGE-L recall)."""
    cand, ref = _words(candidate), _words(reference)
    if not ref:
        return float("nan")
    prev = [0] * (len(cand) + 1)
    for r in ref:
        row = [0] * (len(cand) + 1)
        for j, c in enumerate(cand, 1):
            row[j] = prev[j - 1] + 1 if r == c else max(prev[j], row[j - 1])
        prev = row
    return prev[-1] / len(ref)


def diversity(answer: str) -> float:
    """Unique whitespace tokens / total tokens * 100 (the spec's diversity of one answer)."""
    tokens = answer.split()
    return 100.0 * len(set(tokens)) / len(tokens) if tokens else 0.0
