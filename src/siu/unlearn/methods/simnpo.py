"""SimNPO: reference-free, length-normalised NPO on the forget set, cross-entropy on the retain set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from siu.unlearn.losses import cross_entropy, sequence_logprobs, simnpo_loss
from siu.unlearn.methods.base import LossInputs, Method, Part, register, retain_weight_field


@dataclass
class SimNpoOptions:
    simnpo_beta: float = field(default=2.5, metadata={"help": "SimNPO: inverse temperature beta (2.5)"})
    simnpo_gamma: float = field(default=0.0, metadata={"help": "SimNPO: reward margin gamma (0)"})
    retain_weight: float = retain_weight_field()


@register
class SimNpo(Method):
    """``SimNPO(forget) + retain_weight * CE(retain)`` (Fan et al. 2024, "Simplicity Prevails", eq. 4).

    The forget term is a mean over forget sequences of ``-(2/beta) log sigmoid(-(beta/|y|) log p(y|x) -
    gamma)``: no reference model, the answer's log-probability divided by its length. The paper
    leaves beta and gamma to tuning per benchmark (their table A2: beta 2.5-4.5, gamma 0-2 on TOFU);
    we take beta 2.5, gamma 0 (their section 4 notes gamma = 0 works well for unlearning) and the
    retain cross-entropy with weight 1 as the retain term.
    """

    name = "simnpo"
    summary = "SimNPO: reference-free, length-normalised NPO + retain cross-entropy"
    Options = SimNpoOptions
    data = "forget_retain"
    positive = ("simnpo_beta",)
    parts: ClassVar[dict[str, Part]] = {
        "simnpo": Part("forget", "sequences"),
        "retain": Part("retain", "tokens"),
    }

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        f = x.forget
        logp, n_tokens = sequence_logprobs(x.logits[f], x.labels[f])
        forget = simnpo_loss(logp, n_tokens, self.options.simnpo_beta, self.options.simnpo_gamma)
        retain = cross_entropy(x.logits[~f], x.labels[~f])
        loss = forget * x.scales["simnpo"] + self.options.retain_weight * retain * x.scales["retain"]
        return loss, {"simnpo": float(forget.detach()), "retain": float(retain.detach())}
