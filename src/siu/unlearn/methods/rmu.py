"""RMU: push a middle layer's hidden states on the forget set toward a scaled random direction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from siu.errors import SiuError
from siu.unlearn.losses import hidden_mse
from siu.unlearn.methods.base import LossInputs, Method, Part, register
from siu.unlearn.reference import forward
from siu.unlearn.setup import decoder_layers


@dataclass
class RmuOptions:
    rmu_layer: int = field(
        default=-1, metadata={"help": "RMU: decoder layer whose output is steered (-1: the middle one)"}
    )
    rmu_steering: float = field(
        default=2.0,
        metadata={
            "help": "RMU: length of the random direction, in the original's mean hidden-state norms (2)"
        },
    )
    rmu_alpha: float = field(default=100.0, metadata={"help": "RMU: weight of the retain term (100)"})


@register
class Rmu(Method):
    """Representation misdirection for unlearning (Li et al. 2024, "The WMDP Benchmark", section 5.2).

    Forget term: the mean squared distance between the model's hidden state after decoder layer
    ``l`` and ``c * u`` at the forget set's answer positions, ``u`` a fixed random unit vector (their
    eq. 1; drawn from the run's seed, uniform in [0, 1) and normalised, as theirs). Retain term:
    ``alpha`` times the mean squared distance to the original's hidden state at the retain set's answer
    positions (their eq. 2; the original's states are cached before step 1, no second model). LoRA goes
    on the layers up to ``l`` only, since nothing after it changes that hidden state (the paper
    updates three MLPs up to ``l``). Choices the paper leaves to each model: ``l`` is the middle layer
    (theirs: 7 of Zephyr-7B's 32); ``c`` is given relative to the original's mean hidden-state norm on
    the forget set (theirs, 6.5 for Zephyr, is an absolute value tuned to that model's activation
    scale), 2 by default; ``alpha`` 100 (theirs 1200 at c = 6.5; the ratio is what matters).
    """

    name = "rmu"
    summary = "RMU: steer a middle layer's hidden states on the forget set to a random direction"
    # the tiny model's fair default, from the sweep on the default world (docs/results/method-sweep.md)
    profile_overrides: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"lr": 3e-3}}
    Options = RmuOptions
    data = "forget_retain"
    reference = True
    parts: ClassVar[dict[str, Part]] = {
        "forget": Part("forget", "tokens"),
        "retain": Part("retain", "tokens"),
    }
    signed = ("rmu_layer",)  # -1: the middle layer
    positive = ("rmu_steering",)

    def __init__(self, options: RmuOptions | None = None) -> None:
        super().__init__(options)
        self.direction: Tensor | None = None
        self.layer = -1

    def _layer(self, model: torch.nn.Module) -> int:
        n = decoder_layers(model)
        layer = self.options.rmu_layer if self.options.rmu_layer >= 0 else n // 2
        if not 0 <= layer < n:
            raise SiuError(f"rmu_layer {layer} is not a decoder layer of this model (0..{n - 1})")
        return layer

    def feature_layer(self, model: torch.nn.Module) -> int | None:
        return self._layer(_base(model))

    def lora_upto(self, model: torch.nn.Module) -> int | None:
        return self._layer(_base(model))

    @torch.no_grad()
    def prepare(
        self, model: torch.nn.Module, steps: Sequence[Sequence[dict[str, Tensor]]], seed: int
    ) -> None:
        """Draw ``u`` and scale it by the original's mean hidden-state norm at the forget set's answer
        positions (every step's batch holds the same kind of samples: the first one is measured, all
        its micro-batches; under several processes the sums are all-reduced, so every process steers
        to the same vector, that of the whole first batch)."""
        self.layer = layer = self._layer(_base(model))
        was_training = model.training
        model.eval()
        sums = []
        for batch in steps[0]:
            _, hidden = forward(model, batch, layer)
            assert hidden is not None
            counted = (batch["labels"][:, 1:] != -100) & batch["forget"][:, None].to(hidden.device)
            norms = hidden[:, :-1][counted].float().norm(dim=-1)
            sums.append(torch.stack([norms.sum(), torch.tensor(float(norms.numel()), device=norms.device)]))
        model.train(was_training)
        total = torch.stack(sums).sum(dim=0)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
        scale = total[0] / total[1] if total[1] > 0 else torch.tensor(1.0)
        u = torch.rand(hidden.shape[-1], generator=torch.Generator().manual_seed(seed))
        self.direction = (self.options.rmu_steering * float(scale) * u / u.norm()).to(hidden.device)

    def record(self) -> dict[str, Any]:
        assert self.direction is not None
        return {"layer": self.layer, "direction_norm": float(self.direction.norm())}

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        assert x.hidden is not None and x.ref_hidden is not None and self.direction is not None
        f = x.forget
        forget = hidden_mse(x.hidden[f], self.direction, x.labels[f])
        retain = hidden_mse(x.hidden[~f], x.ref_hidden[~f], x.labels[~f])
        loss = forget * x.scales["forget"] + self.options.rmu_alpha * retain * x.scales["retain"]
        return loss, {"forget": float(forget.detach()), "retain": float(retain.detach())}


def _base(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft / DDP wrapper (for its decoder)."""
    inner = getattr(model, "module", model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner
