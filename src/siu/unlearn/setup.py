"""Which weights an unlearning run trains: LoRA on the language model, or a scope of full fine-tuning.

Shared by ``siu unlearn`` and the relearning attack of ``siu eval``, so that the attacker trains
exactly what the unlearning trained.
"""

from __future__ import annotations

import re
import warnings

import torch

from siu.errors import SiuError

FULL_SCOPES = ("all", "language_model", "vision")


def language_model_linear_names(model: torch.nn.Module) -> list[str]:
    """Full names of the ``nn.Linear`` layers inside the language model (not vision tower, projector, lm_head)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    prefix = next((name for name, module in model.named_modules() if module is decoder), None)
    if decoder is None or decoder is model or prefix is None:
        raise SiuError(f"cannot find the language model inside {type(model).__name__} to put LoRA on")
    names = [
        f"{prefix}.{name}" if prefix else name
        for name, module in decoder.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]
    if not names:
        raise SiuError(f"the language model of {type(model).__name__} has no linear layers for LoRA")
    return names


def decoder_layers(model: torch.nn.Module) -> int:
    """How many decoder layers the language model has."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise SiuError(f"cannot find the decoder layers of {type(model).__name__}")
    return len(layers)


_LAYER = re.compile(r"\.layers\.(\d+)\.")


def apply_lora(
    model: torch.nn.Module, r: int, alpha: float, dropout: float, upto: int | None = None
) -> torch.nn.Module:
    """Wrap ``model`` in a peft LoRA model on the language model's linear layers (``upto``: only in
    decoder layers 0..upto, e.g. the layers that feed a hidden state a method steers)."""
    from peft import LoraConfig, get_peft_model

    targets = language_model_linear_names(model)
    if upto is not None:
        targets = [n for n in targets if (m := _LAYER.search(n)) is not None and int(m.group(1)) <= upto]
        if not targets:
            raise SiuError(f"no LoRA target in decoder layers 0..{upto}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    with warnings.catch_warnings():
        # peft asks transformers v5 for the deprecated is_gradient_checkpointing; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def set_full_scope(model: torch.nn.Module, scope: str) -> None:
    """Full fine-tuning: which weights train.

    ``all``: every weight. ``language_model``: the language model and its head (vision tower and
    projector frozen, as LoRA in the paper). ``vision``: the vision tower and the projector only, so
    text-only behaviour (facts, anything without an image) cannot change at all.
    """
    if scope not in FULL_SCOPES:
        raise SiuError(f"full_scope must be one of {', '.join(FULL_SCOPES)}; got {scope!r}")
    if scope == "all":
        model.requires_grad_(True)
        return
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        raise SiuError(f"cannot find the language model inside {type(model).__name__}")
    head = model.get_output_embeddings()
    language = {id(p) for p in decoder.parameters()} | {id(p) for p in (head.parameters() if head else [])}
    for p in model.parameters():
        p.requires_grad_((id(p) in language) == (scope == "language_model"))


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them.

    The embeddings' output is made to require grad: with LoRA the embedding layer is frozen, so
    without it the first checkpointed layer's input needs no grad and (re-entrant checkpointing)
    its LoRA weights would get none, silently training nothing (a known failure elsewhere).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        raise SiuError(f"{type(base).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x's name for it
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    base.enable_input_require_grads()
