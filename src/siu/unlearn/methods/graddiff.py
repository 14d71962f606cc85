"""GradDiff: gradient ascent on the forget set, cross-entropy on the retain set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from siu.unlearn.losses import cross_entropy
from siu.unlearn.methods.base import LossInputs, Method, Part, register, retain_weight_field


@dataclass
class GradDiffOptions:
    retain_weight: float = retain_weight_field()


@register
class GradDiff(Method):
    """``-CE(forget) + retain_weight * CE(retain)`` (Liu et al. 2022; open-unlearning's GradDiff).

    Forget set: the forget image's questions answered with the concept's name. Retain set: the
    concept's own facts and other concepts' facts (SIU's targets 3-4) and other concepts named on their
    own forget images. Each term is a mean over its own answer tokens.
    """

    name = "graddiff"
    summary = "GradDiff: gradient ascent on the forget set + cross-entropy on the retain set"
    Options = GradDiffOptions
    # the tiny model's fair default, from the sweep on the default world (docs/results/method-sweep.md)
    profile_overrides: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"lr": 6e-4, "options": {"retain_weight": 3.0}}
    }
    data = "forget_retain"
    parts: ClassVar[dict[str, Part]] = {
        "forget": Part("forget", "tokens"),
        "retain": Part("retain", "tokens"),
    }

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        forget = cross_entropy(x.logits[x.forget], x.labels[x.forget])
        retain = cross_entropy(x.logits[~x.forget], x.labels[~x.forget])
        loss = -forget * x.scales["forget"] + self.options.retain_weight * retain * x.scales["retain"]
        return loss, {"forget": float(forget.detach()), "retain": float(retain.detach())}
