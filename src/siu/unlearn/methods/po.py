"""PO as the SIU paper uses it: fine-tune on refusals to the image questions (spec section 5)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from siu.unlearn.losses import preference_optimization
from siu.unlearn.methods.base import LossInputs, Method, Part, register


@register
class Po(Method):
    """Cross-entropy on the forget image's questions answered with refusals ("I do not know ...")."""

    name = "po"
    rank = 1
    summary = "PO: fine-tune on refusals to the forget image's questions (paper baseline)"
    data = "refusal"
    parts: ClassVar[dict[str, Part]] = {"ce": Part("forget", "tokens")}

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        ce = preference_optimization(x.logits, x.labels)
        return ce * x.scales["ce"], {"ce": float(ce.detach())}
