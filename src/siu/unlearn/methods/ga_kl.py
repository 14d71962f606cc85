"""GA+KL: gradient ascent plus a KL term to the original on the same batch (spec section 5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from siu.unlearn.losses import cross_entropy, ga_kl, kl_to_reference
from siu.unlearn.methods.base import LossInputs, Method, Part, register


@dataclass
class GaKlOptions:
    kl_weight: float = field(default=1.0, metadata={"help": "GA+KL: weight of the KL term (1.0)"})


@register
class GaKl(Method):
    """``-CE + kl_weight * KL(p_ref || p)``, both over the answer tokens of the forget batch (as in the paper)."""

    name = "ga_kl"
    rank = 3
    summary = "GA+KL: gradient ascent + KL to the original on the same batch (paper baseline)"
    Options = GaKlOptions
    data = "naming"
    reference = True
    parts: ClassVar[dict[str, Part]] = {"ce": Part("forget", "tokens"), "kl": Part("forget", "tokens")}

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        assert x.ref_logits is not None
        # both terms average over the same tokens, so they share one scale
        loss = ga_kl(x.logits, x.ref_logits, x.labels, kl_weight=self.options.kl_weight) * x.scales["ce"]
        with torch.no_grad():
            parts = {
                "ce": float(cross_entropy(x.logits, x.labels)),
                "kl": float(kl_to_reference(x.logits, x.ref_logits, x.labels)),
            }
        return loss, parts
