"""``p_ref``: the original model's logits for a batch, without a second copy of the model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from siu.models.adapter import IGNORE_INDEX
from siu.unlearn.batches import model_inputs

REFERENCES = ("cached", "adapter_off")


def forward(
    model: torch.nn.Module, batch: dict[str, Tensor], layer: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """``(logits, hidden state after decoder layer `layer`)``; the hidden state is None without a layer."""
    outputs = model(**model_inputs(batch), output_hidden_states=layer is not None)
    return outputs.logits, (outputs.hidden_states[layer + 1] if layer is not None else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def _supervised_positions(labels: Tensor) -> Tensor:
    """Positions ``p`` whose logits predict a label (``labels[p + 1] != -100``), for one (T,) row."""
    return (labels[1:] != IGNORE_INDEX).nonzero(as_tuple=True)[0]


class Reference:
    """``p_ref`` logits for a batch, without a second copy of the model (with ``layer``: the original's
    hidden state after that decoder layer instead of its logits).

    ``adapter_off``: the trained LoRA model itself with its adapters disabled (exactly the original
    weights), one extra forward pass per step. ``cached``: logits of the original model computed by
    :meth:`precompute` before training, stored per sample at the supervised positions only (the data
    never change, so this is exact); other positions of the returned tensor are zero and never read
    by the losses.
    """

    def __init__(self, mode: str, layer: int | None = None) -> None:
        if mode not in REFERENCES:
            raise ValueError(f"mode must be one of {', '.join(REFERENCES)}, got {mode!r}")
        self.mode = mode
        self.layer = layer
        self.rows: dict[int, Tensor] = {}

    @torch.no_grad()
    def _eval_logits(self, model: torch.nn.Module, batch: dict[str, Tensor]) -> Tensor:
        was_training = model.training
        model.eval()
        try:
            logits, hidden = forward(model, batch, self.layer)
            return (logits if hidden is None else hidden).detach()
        finally:
            model.train(was_training)

    @torch.no_grad()
    def precompute(self, model: torch.nn.Module, batches: Sequence[dict[str, Tensor]]) -> None:
        """Store the original model's logits for every sample, each from the first batch that holds it."""
        for batch in batches:
            indices = batch["index"].tolist()
            if all(i in self.rows for i in indices):
                continue
            logits = self._eval_logits(model, batch)
            for row, i in enumerate(indices):
                if i not in self.rows:
                    positions = _supervised_positions(batch["labels"][row]).to(logits.device)
                    self.rows[i] = logits[row, positions].clone()

    def logits(self, model: torch.nn.Module, batch: dict[str, Tensor], like: Tensor) -> Tensor:
        if self.mode == "adapter_off":
            peft_model = unwrap(model)
            with peft_model.disable_adapter():  # type: ignore[operator]
                return self._eval_logits(peft_model, batch)
        ref = torch.zeros_like(like, requires_grad=False)
        for row, i in enumerate(batch["index"].tolist()):
            if i not in self.rows:
                raise RuntimeError(f"no reference logits stored for sample {i}")
            positions = _supervised_positions(batch["labels"][row]).to(like.device)
            stored = self.rows[i]
            if stored.shape[0] != positions.numel():
                raise RuntimeError(
                    f"sample {i}: stored reference covers {stored.shape[0]} positions, not {positions.numel()}"
                )
            ref[row, positions] = stored.to(ref.dtype)
        return ref
