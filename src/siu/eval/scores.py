"""Pure scoring functions of the evaluation: membership-inference scores, AUC, ROUGE-L, diversity.

Membership scores take per-token log-probabilities of an answer (higher score = "more member-like"):

* ``min_k_prob``: the mean of the lowest ``k`` fraction of token log-probs (Min-K% Prob, Shi et al.).
* ``min_k_plus_plus``: the same over token scores standardised by the model's own distribution at
  each position, ``(log p(x_t) - mu_t) / sigma_t`` (Min-K%++, Zhang et al.).
* ``loss_score``: the mean token log-prob (minus the loss).
* ``zlib_score``: the summed log-prob divided by the zlib-compressed length of the text.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence

import torch


def min_k_prob(logprobs: torch.Tensor, k: float = 0.4) -> float:
    """Mean of the ``ceil(k * n)`` lowest token log-probs (at least one)."""
    if logprobs.numel() == 0:
        return float("nan")
    n = max(1, math.ceil(k * logprobs.numel()))
    return float(torch.sort(logprobs.float()).values[:n].mean())


def min_k_plus_plus(logprobs: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, k: float = 0.4) -> float:
    """Min-K%++: Min-K% over ``(logprob - mu) / sigma`` per token."""
    return min_k_prob((logprobs.float() - mu.float()) / sigma.float().clamp(min=1e-6), k)


def loss_score(logprobs: torch.Tensor) -> float:
    return float(logprobs.float().mean()) if logprobs.numel() else float("nan")


def zlib_score(logprobs: torch.Tensor, text: str) -> float:
    return float(logprobs.float().sum()) / max(1, len(zlib.compress(text.encode("utf-8"))))


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


def bernoulli_kl(p: float, q: float, eps: float = 1e-8) -> float:
    """KL between two yes/no distributions with P(yes) = p and q (C-Dis compares token probabilities)."""
    p, q = min(max(p, eps), 1 - eps), min(max(q, eps), 1 - eps)
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
