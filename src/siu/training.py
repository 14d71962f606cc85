"""The one training loop: AdamW, warm-up + cosine schedule, gradient clipping, NaN guard.

Pre-training of the synthetic world's model and every unlearning method run through ``train``;
they differ only in the batches they feed and the loss function they pass. A step's batch may come
as a list of micro-batches (gradient accumulation: each is run and back-propagated on its own, so
only one micro-batch's activations are alive at a time; their losses must already be scaled so that
they sum to the batch's loss). A float16 model's gradients go through a loss scaler, since float16
underflows where bfloat16 and float32 do not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from siu.errors import SiuError


class NonFiniteLoss(SiuError):
    """The loss became NaN or infinite; training stopped before anything was saved."""


@dataclass
class TrainConfig:
    steps: int
    lr: float
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | constant
    max_grad_norm: float = 1.0
    min_lr_ratio: float = 0.0


@dataclass
class TrainLog:
    losses: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    warmup = max(1, math.ceil(cfg.warmup_ratio * cfg.steps)) if cfg.warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, cfg.steps - warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
Batch = dict[str, torch.Tensor]


def _float16(model: torch.nn.Module) -> bool:
    return any(p.dtype == torch.float16 for p in model.parameters())


def train(
    model: torch.nn.Module,
    batches: Iterator[Batch | list[Batch]],
    loss_fn: LossFn,
    cfg: TrainConfig,
    desc: str = "training",
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], bool | None] | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> TrainLog:
    """Run ``cfg.steps`` optimiser steps; ``loss_fn`` returns the loss and named parts to log.

    ``reduce`` turns this process's logged figures into the whole batch's (under several processes:
    the mean over processes of their scaled losses); the default logs them as they are. ``on_step``
    returning True stops training after that step (a stopping rule; ``cfg.steps`` is then the cap).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SiuError("the model has no trainable parameters")
    if any(p.dtype == torch.float16 for p in params):
        raise SiuError(
            "float16 weights cannot be trained (their updates underflow); load the model in bfloat16 "
            "or float32 (--dtype), or train LoRA adapters, which are kept in float32"
        )
    # float16 activations (a float16 base under float32 LoRA weights): scale the loss so that small
    # gradients survive the backward pass; skipped steps (inf gradients) are the scaler's to handle
    scaler = torch.amp.GradScaler(next(iter(params)).device.type) if _float16(model) else None
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    log = TrainLog()
    model.train()
    start = time.perf_counter()
    bar = tqdm(
        range(cfg.steps), desc=desc, unit="step", disable=not progress, dynamic_ncols=True, mininterval=1.0
    )
    for step in bar:
        item = next(batches)
        micro = item if isinstance(item, list) else [item]
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), dtype=torch.float64)
        summed: dict[str, float] = {}
        for batch in micro:
            loss, parts = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"loss is {loss.item()} at step {step + 1}; stopped, nothing was written")
            (scaler.scale(loss) if scaler is not None else loss).backward()
            total += float(loss.detach())
            for key, value in parts.items():
                summed[key] = summed.get(key, 0.0) + value
        if scaler is not None:
            scaler.unscale_(opt)
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        sched.step()
        figures = torch.tensor([float(total), *summed.values()], dtype=torch.float64)
        if reduce is not None:
            figures = reduce(figures)
        logged = dict(zip(summed, figures[1:].tolist(), strict=True))
        record = {"step": step + 1, "loss": float(figures[0]), "lr": sched.get_last_lr()[0], **logged}
        log.losses.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)  # the bar's own mininterval decides
        if on_step is not None and on_step(step + 1, record):
            break
    model.eval()
    log.seconds = time.perf_counter() - start
    return log
