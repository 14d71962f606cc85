"""Attacks on a forgotten concept that users worry about.

Altered pictures (crop, flip, blur, JPEG), weight quantisation (8 and 4 bits, simulated by rounding
the weights), and relearning (a few benign fine-tuning steps on *other* concepts). After each, the
model is asked the benchmark's name questions about the concept's held-out test images; the figure
is the share of answers that still name the concept (lower = the forgetting holds). Deterministic:
no randomness in any perturbation, and the relearning is seeded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterator

import torch
from PIL import Image, ImageFilter, ImageOps

from siu.bench.load import Benchmark
from siu.bench.schema import Concept
from siu.models.adapter import VLM, Sample


def _crop(image: Image.Image) -> Image.Image:
    w, h = image.size  # the central 80%, scaled back to the original size
    box = (round(w * 0.1), round(h * 0.1), round(w * 0.9), round(h * 0.9))
    return image.crop(box).resize((w, h), Image.BILINEAR)


def _jpeg(image: Image.Image, quality: int = 30) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


PERTURBATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "crop": _crop,
    "flip": ImageOps.mirror,
    "blur": lambda image: image.filter(ImageFilter.GaussianBlur(radius=max(1.0, image.size[0] / 64))),
    "jpeg": _jpeg,
}


# ----------------------------------------------------------------------------- weight quantisation
QUANT_BITS = (8, 4)
GROUP_SIZE_4BIT = 64  # 4-bit schemes (GPTQ, AWQ, bitsandbytes NF4) scale per group of 64-128 inputs


def fake_quantise(weight: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """Round ``weight`` (out, in) to a symmetric ``bits``-bit grid and back (round to nearest).

    One scale per output row (``group_size=None``, as int8 per-channel schemes) or per group of
    ``group_size`` consecutive input columns of each row (4-bit schemes). The scale maps the group's
    largest magnitude to the largest level, so zeros stay zeros.
    """
    if bits < 2:
        raise ValueError(f"bits must be at least 2, got {bits}")
    levels = 2 ** (bits - 1) - 1  # 127 for 8 bits, 7 for 4
    w = weight.detach().float()
    out_features, in_features = w.shape
    if group_size is None or group_size >= in_features:
        groups = w.reshape(out_features, 1, in_features)
    else:
        pad = (-in_features) % group_size
        groups = torch.nn.functional.pad(w, (0, pad)).reshape(out_features, -1, group_size)
    scale = groups.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / levels
    q = (groups / scale).round().clamp(-levels, levels) * scale
    return q.reshape(out_features, -1)[:, :in_features].to(weight.dtype)


@contextlib.contextmanager
def quantised(model: torch.nn.Module, bits: int) -> Iterator[int]:
    """Temporarily replace every linear weight (not the output head) by its ``bits``-bit rounding.

    Simulates loading the model in 8 or 4 bits (the head stays in full precision, as bitsandbytes
    does by default) on any device; the original weights are kept aside and restored on exit.
    Yields the number of layers quantised.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    group = None if bits >= 8 else GROUP_SIZE_4BIT
    saved: list[tuple[torch.nn.Linear, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear) and module is not head:
                    saved.append((module, module.weight.detach().to("cpu", copy=True)))
                    module.weight.copy_(fake_quantise(module.weight, bits, group))
        yield len(saved)
    finally:
        with torch.no_grad():
            for module, weight in saved:
                module.weight.copy_(weight.to(module.weight.device))


# ----------------------------------------------------------------------------- relearning
def relearn_samples(concept: Concept, bench: Benchmark, per_concept: int = 2) -> list[Sample]:
    """Benign fine-tuning data: the *other* concepts named correctly on their own forget images.

    Prompts are training-style "who is this" paraphrases that the benchmark does not evaluate with;
    nothing in the data names ``concept`` or shows its pictures.
    """
    from siu.unlearn.banks import IDENTITY_PROMPTS
    from siu.unlearn.samples import category_noun, evaluation_prompts, unseen_prompts

    evals = evaluation_prompts(concept, bench)
    samples = []
    k = 0
    for other in bench.concepts:
        if other.slug == concept.slug or not other.images:
            continue
        image = bench.load_image(other, other.forget_image)
        noun = category_noun(other)
        prompts = unseen_prompts([p.format(noun=noun) for p in IDENTITY_PROMPTS], evals)
        for _ in range(per_concept):
            samples.append(Sample(prompts[k % len(prompts)], f"This is {other.name}.", image))
            k += 1
    return samples


@contextlib.contextmanager
def relearned(vlm: VLM, samples: list[Sample], seed: int = 0) -> Iterator[list[float]]:
    """A context in which ``vlm`` has been fine-tuned (LoRA, cross-entropy) on ``samples``.

    The budget is the model family's unlearning profile (LoRA shape, learning rate, steps, batch):
    the attacker spends what the unlearning spent. The adapter is removed on exit, so the model is
    exactly as before. Yields the per-step losses.
    """
    from siu.training import TrainConfig, train
    from siu.unlearn.batches import batch_schedule
    from siu.unlearn.config import UnlearnConfig
    from siu.unlearn.losses import cross_entropy
    from siu.unlearn.preparation import prepare_trainable

    n_params = sum(p.numel() for p in vlm.model.parameters())
    cfg, _ = UnlearnConfig().resolved(str(getattr(vlm.model.config, "model_type", "")), n_params)
    assert cfg.steps is not None and cfg.batch_size is not None and cfg.lr is not None
    encoded = [vlm.encode_one(s) for s in samples]
    schedule = batch_schedule(len(encoded), cfg.batch_size, cfg.steps, seed)
    batches = (vlm.to_device(vlm.collate([encoded[i] for i in idx])) for idx in schedule)

    def loss_fn(
        model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return cross_entropy(model(**VLM.model_inputs(batch)).logits, batch["labels"]), {}

    base = vlm.model
    trainable = [p.requires_grad for p in base.parameters()]
    # The whole attack under one seed (LoRA initialisation and dropout): the same figure whatever ran
    # before it (siu bench run reuses the original's side), and the caller's random state left alone.
    devices = [vlm.device.index or 0] if vlm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        peft_model = prepare_trainable(base, dataclasses.replace(cfg, lora=True))
        try:
            log = train(
                peft_model,
                batches,
                loss_fn,
                TrainConfig(
                    steps=cfg.steps,
                    lr=cfg.lr,
                    warmup_ratio=cfg.warmup_ratio or 0.0,
                    schedule=cfg.schedule or "cosine",
                ),
                desc="relearning attack",
                progress=False,
            )
            yield [r["loss"] for r in log.losses]
        finally:
            peft_model.unload()  # removes the LoRA layers without merging them: the weights are as before
            for p, flag in zip(base.parameters(), trainable, strict=True):
                p.requires_grad_(flag)
            base.eval()
