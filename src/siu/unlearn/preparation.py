"""Everything between a method's data and the first optimiser step, as ``siu unlearn`` does it (and
``siu unlearn --plan`` measures it): the trained weights (LoRA or a full fine-tuning scope), the
batches, the cached reference, the loss that :func:`siu.training.train` calls, and the loop's settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from siu.models.adapter import VLM, Sample
from siu.training import LossFn, TrainConfig
from siu.unlearn.batches import SampleMeta, batch_schedule, groups_of, local_batches, scales_of
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.methods import LossInputs, Method
from siu.unlearn.reference import Reference, forward
from siu.unlearn.samples import UnlearnSample
from siu.unlearn.setup import apply_lora, enable_gradient_checkpointing, set_full_scope


def make_loss_fn(
    method: Method, reference: Reference | None, vocab_mask: Tensor | None, layer: int | None = None
) -> LossFn:
    """The loss that ``train()`` calls: runs the model (and the reference) and applies the method's loss.

    ``layer``: the decoder layer whose hidden state the method reads (the reference then holds the
    original's hidden state there instead of its logits).
    """

    def loss_fn(model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits, hidden = forward(model, batch, layer)
        ref = reference.logits(model, batch, logits if hidden is None else hidden) if reference else None
        scales = scales_of(batch)
        loss, parts = method.loss(
            LossInputs(
                logits=logits,
                labels=batch["labels"],
                target_mask=batch["target_mask"],
                forget=batch["forget"],
                pair=batch["pair"],
                chosen=batch["chosen"],
                scales=scales,
                ref_logits=ref if hidden is None else None,
                vocab_mask=vocab_mask.to(logits.device) if vocab_mask is not None else None,
                hidden=hidden,
                ref_hidden=ref if hidden is not None else None,
            )
        )
        # each logged part as this slice's share of the batch's mean (like the loss), so that the
        # figures of micro-batches add up and those of processes average to the whole batch's
        return loss, {k: v * scales.get(k, 1.0) for k, v in parts.items()}

    return loss_fn


def sample_meta(samples: Sequence[UnlearnSample]) -> list[SampleMeta]:
    return [SampleMeta(forget=s.role == "forget", pair=s.pair, chosen=s.chosen) for s in samples]


def prepare_trainable(model: torch.nn.Module, cfg: UnlearnConfig, upto: int | None = None) -> torch.nn.Module:
    """LoRA on the language model (returns the peft model; ``upto``: decoder layers 0..upto only), or
    the full fine-tuning scope."""
    if cfg.lora:
        assert cfg.lora_r is not None and cfg.lora_alpha is not None
        return apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout or 0.0, upto=upto)
    set_full_scope(model, cfg.full_scope or "language_model")
    return model


@dataclasses.dataclass
class PreparedTraining:
    """What :func:`train` needs besides the loss: the trained model, each step's micro-batches, the
    reference (None when the method has none) and the decoder layer the method reads (or None)."""

    model: torch.nn.Module
    steps: list[list[dict[str, Tensor]]]
    reference: Reference | None
    layer: int | None


def prepare_training(
    vlm: VLM,
    cfg: UnlearnConfig,
    method: Method,
    samples: Sequence[Sample],
    metas: Sequence[SampleMeta],
    rank: int = 0,
    world: int = 1,
    load_in: str | None = None,
    reference_model: torch.nn.Module | None = None,
) -> PreparedTraining:
    """Everything between the data and the first step, as ``siu unlearn`` does it (and ``--plan``
    measures it): trained weights, checkpointing, batches, the cached reference, the method's own
    preparation. ``samples``: the :class:`Sample` of each data item; ``cfg``: a resolved config.
    ``reference_model``: the model a cached reference holds to instead of the one trained (a sequence's
    original model)."""
    assert cfg.steps is not None and cfg.batch_size is not None
    layer = method.feature_layer(vlm.model)
    if load_in is not None:  # norms and head in float32, inputs that require grad (QLoRA's recipe)
        from peft import prepare_model_for_kbit_training

        prepare_model_for_kbit_training(vlm.model, use_gradient_checkpointing=False)
    model = prepare_trainable(vlm.model, cfg, upto=method.lora_upto(vlm.model))
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    encoded = [vlm.encode_one(s) for s in samples]
    schedule = batch_schedule(len(encoded), cfg.batch_size, cfg.steps, cfg.seed, groups_of(metas))
    steps = local_batches(vlm, encoded, metas, schedule, rank, world, method, cfg.micro_batch_size)
    batches = [batch for step in steps for batch in step]  # every micro-batch, in training order
    reference = None
    if method.reference:
        reference = Reference(cfg.reference, layer)
        if reference.mode == "cached" and reference_model is not None:
            reference.precompute(reference_model, batches)
        elif reference.mode == "cached":
            # LoRA starts as the identity, but disabling it makes "original model" true by construction
            with model.disable_adapter() if cfg.lora else contextlib.nullcontext():  # type: ignore[operator]
                reference.precompute(model, batches)
    method.prepare(model, steps, cfg.seed)
    return PreparedTraining(model, steps, reference, layer)


def train_config(cfg: UnlearnConfig, steps: int | None = None) -> TrainConfig:
    """The loop's settings of a resolved config (``steps``: fewer than the config's, e.g. to measure)."""
    assert cfg.steps is not None and cfg.lr is not None
    return TrainConfig(
        steps=steps if steps is not None else cfg.steps,
        lr=cfg.lr,
        warmup_ratio=cfg.warmup_ratio or 0.0,
        weight_decay=cfg.weight_decay or 0.0,
        schedule=cfg.schedule or "cosine",
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm is not None else 1.0,
    )
