"""IdkDPO: DPO with a refusal preferred over the naming answer on the forget set, cross-entropy on the retain set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from siu.unlearn.losses import cross_entropy, dpo_loss, sequence_logprobs
from siu.unlearn.methods.base import LossInputs, Method, Part, register, retain_weight_field


@dataclass
class IdkDpoOptions:
    dpo_beta: float = field(default=0.1, metadata={"help": "IdkDPO: DPO inverse temperature beta (0.1)"})
    retain_weight: float = retain_weight_field()


def _by_pair(values: Tensor, pair: Tensor) -> Tensor:
    return values[torch.argsort(pair)]


@register
class IdkDpo(Method):
    """``DPO(refusal > naming) + retain_weight * CE(retain)`` (Rafailov et al. 2023; Maini et al. 2024, TOFU).

    Each forget question on the forget image is asked twice, as a pair: the preferred answer is a
    refusal ("I do not know its specific name.", the PO bank), the dispreferred one names the concept.
    DPO's eq. 7 with the cached original as the reference, a mean over pairs; beta 0.1 (DPO's and
    open-unlearning's default). TOFU's IdkDPO adds a retain term; ours is the retain cross-entropy.
    """

    name = "idkdpo"
    summary = "IdkDPO: DPO preferring a refusal to the naming answer + retain cross-entropy"
    Options = IdkDpoOptions
    data = "preference"
    reference = True
    positive = ("dpo_beta",)
    parts: ClassVar[dict[str, Part]] = {"dpo": Part("forget", "pairs"), "retain": Part("retain", "tokens")}

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        assert x.ref_logits is not None
        f = x.forget
        logp, _ = sequence_logprobs(x.logits[f], x.labels[f])
        ref_logp, _ = sequence_logprobs(x.ref_logits[f], x.labels[f])
        pair, chosen = x.pair[f], x.chosen[f]
        c, r = chosen, ~chosen
        if not torch.equal(pair[c].sort().values, pair[r].sort().values):
            raise RuntimeError("a preference pair was split across batches")
        dpo = dpo_loss(
            _by_pair(logp[c], pair[c]),
            _by_pair(logp[r], pair[r]),
            _by_pair(ref_logp[c], pair[c]),
            _by_pair(ref_logp[r], pair[r]),
            self.options.dpo_beta,
        )
        retain = cross_entropy(x.logits[~f], x.labels[~f])
        loss = dpo * x.scales["dpo"] + self.options.retain_weight * retain * x.scales["retain"]
        return loss, {"dpo": float(dpo.detach()), "retain": float(retain.detach())}
