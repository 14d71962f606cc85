"""MMUnlearner-style saliency-masked GradDiff: update only the weights that matter more to the forget set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from siu.unlearn.losses import cross_entropy
from siu.unlearn.methods.base import register
from siu.unlearn.methods.graddiff import GradDiff
from siu.unlearn.reference import forward


@register
class MmUnlearner(GradDiff):
    """Saliency-masked GradDiff in the spirit of MMUnlearner (Huo et al. 2025, "MMUnlearner", section 3).

    Before the first step, each trainable weight's saliency is measured on the one image's data: the
    squared gradient of the forget set's token-mean cross-entropy and of the retain set's (each sample
    counted once, from the first batch that holds it). Only the weights whose forget saliency exceeds
    their retain saliency are updated (a gradient mask for the whole run); the loss is GradDiff's,
    ``-CE(forget) + retain_weight * CE(retain)``. The paper masks the language model's weights with a
    geometry-constrained update; we take the plain mask, on full fine-tuning of the language model
    (the default of this method in every profile: a mask on LoRA factors would not mean "these weights
    of the model"). Under several processes the gradients are all-reduced before they are
    squared, so every process keeps the same mask (a sample that two processes hold is counted by
    both). AdamW with weight decay 0 leaves a masked weight exactly as it was.
    """

    name = "mmunlearner"
    summary = "MMUnlearner: GradDiff on the weights salient to the forget set, not to the retain set"
    profile_overrides: ClassVar[dict[str, dict[str, Any]]] = {
        # lr from the sweep on the default world after the saliency was made batch-independent
        # (docs/results/method-sweep.md)
        "tiny": {"lora": False, "weight_decay": 0.0, "lr": 5e-4},
        "paper": {"lora": False, "weight_decay": 0.0},
    }

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.kept = 0.0  # share of the trainable weights the mask lets train

    def prepare(
        self, model: torch.nn.Module, steps: Sequence[Sequence[dict[str, Tensor]]], seed: int
    ) -> None:
        batches = [batch for step in steps for batch in step]
        params = [p for p in model.parameters() if p.requires_grad]
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        saliency = {}
        for role in ("forget", "retain"):
            # each sample once, from the first batch that holds it; the gradient is that of the
            # role's token-mean cross-entropy however the samples are cut into (micro-)batches
            chosen = []
            seen: set[int] = set()
            for batch in batches:
                rows = batch["forget"] if role == "forget" else ~batch["forget"]
                rows = rows & torch.tensor(
                    [i not in seen for i in batch["index"].tolist()], device=rows.device
                )
                seen.update(batch["index"][rows].tolist())
                chosen.append(rows)
            tokens = torch.tensor(
                float(
                    sum(
                        int((b["labels"][r][:, 1:] != -100).sum())
                        for b, r in zip(batches, chosen, strict=True)
                    )
                )
            )
            if distributed:
                torch.distributed.all_reduce(tokens)
            model.zero_grad(set_to_none=True)
            for batch, rows in zip(batches, chosen, strict=True):
                n = int((batch["labels"][rows][:, 1:] != -100).sum())
                if n:
                    logits, _ = forward(model, batch)
                    (cross_entropy(logits[rows], batch["labels"][rows]) * (n / float(tokens))).backward()
            grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
            if distributed:  # the whole batch's gradient first, then its square
                for g in grads:
                    torch.distributed.all_reduce(g)
            saliency[role] = [g**2 for g in grads]
        model.zero_grad(set_to_none=True)
        kept = total = 0
        for p, forget, retain in zip(params, saliency["forget"], saliency["retain"], strict=True):
            mask = (forget > retain).to(p.dtype)
            p.register_hook(lambda grad, mask=mask: grad * mask)
            kept += int(mask.sum())
            total += mask.numel()
        self.kept = kept / max(1, total)

    def record(self) -> dict[str, Any]:
        return {"trained_share": self.kept}
