"""NPO: negative preference optimisation on the forget set, cross-entropy on the retain set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from siu.unlearn.losses import cross_entropy, npo_loss, sequence_logprobs
from siu.unlearn.methods.base import LossInputs, Method, Part, register, retain_weight_field


@dataclass
class NpoOptions:
    npo_beta: float = field(default=0.1, metadata={"help": "NPO: inverse temperature beta (paper 0.1)"})
    retain_weight: float = retain_weight_field()


@register
class Npo(Method):
    """``NPO(forget) + retain_weight * CE(retain)`` (Zhang et al. 2024, "Negative Preference Optimization").

    The NPO term (their eq. 3) is a mean over forget *sequences* of
    ``-(2/beta) log sigmoid(-beta log(p(y|x) / p_ref(y|x)))`` with ``p`` the answer's summed
    probability; the paper's main runs add a retain term (their section 5, "NPO+RT"), which we take
    as the cross-entropy on the retain set (targets 3-4 and other concepts named on their forget
    images). beta = 0.1 as in the paper; the reference is the cached original (no second model).
    """

    name = "npo"
    summary = "NPO: negative preference optimisation on the forget set + retain cross-entropy"
    Options = NpoOptions
    # the tiny model's fair default, from the sweep on the default world (docs/results/method-sweep.md)
    profile_overrides: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"options": {"retain_weight": 3.0}}}
    data = "forget_retain"
    reference = True
    positive = ("npo_beta",)
    parts: ClassVar[dict[str, Part]] = {
        "npo": Part("forget", "sequences"),
        "retain": Part("retain", "tokens"),
    }

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        assert x.ref_logits is not None
        f = x.forget
        logp, _ = sequence_logprobs(x.logits[f], x.labels[f])
        ref_logp, _ = sequence_logprobs(x.ref_logits[f], x.labels[f])
        npo = npo_loss(logp, ref_logp, self.options.npo_beta)
        retain = cross_entropy(x.logits[~f], x.labels[~f])
        loss = npo * x.scales["npo"] + self.options.retain_weight * retain * x.scales["retain"]
        return loss, {"npo": float(npo.detach()), "retain": float(retain.detach())}
