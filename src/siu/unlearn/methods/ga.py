"""GA: gradient ascent on the forget image's questions answered with the concept's name (spec section 5)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from siu.unlearn.losses import gradient_ascent
from siu.unlearn.methods.base import LossInputs, Method, Part, register


@register
class Ga(Method):
    """The negated cross-entropy of answers that name the concept; logs the (positive) cross-entropy."""

    name = "ga"
    rank = 2
    summary = "GA: gradient ascent on answers naming the concept (paper baseline)"
    data = "naming"
    parts: ClassVar[dict[str, Part]] = {"ce": Part("forget", "tokens")}

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        loss = gradient_ascent(x.logits, x.labels)
        return loss * x.scales["ce"], {"ce": -float(loss.detach())}
