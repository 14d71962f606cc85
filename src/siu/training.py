"""The one training loop: AdamW, warm-up + cosine schedule, gradient clipping, NaN guard.

Pre-training of the synthetic world's model and every unlearning method run through ``train``;
they differ only in the batches they feed and the loss function they pass.
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


def train(
    model: torch.nn.Module,
    batches: Iterator[dict[str, torch.Tensor]],
    loss_fn: LossFn,
    cfg: TrainConfig,
    desc: str = "training",
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainLog:
    """Run ``cfg.steps`` optimiser steps; ``loss_fn`` returns the loss and named parts to log."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SiuError("the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    log = TrainLog()
    model.train()
    start = time.perf_counter()
    bar = tqdm(
        range(cfg.steps), desc=desc, unit="step", disable=not progress, dynamic_ncols=True, mininterval=1.0
    )
    for step in bar:
        batch = next(batches)
        loss, parts = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss is {loss.item()} at step {step + 1}; stopped, nothing was written")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        record = {"step": step + 1, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0], **parts}
        log.losses.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)  # the bar's own mininterval decides
        if on_step is not None:
            on_step(step + 1, record)
    model.eval()
    log.seconds = time.perf_counter() - start
    return log
