"""Batches of an unlearning run: the schedule, each process's slice, and the factors that keep DDP exact.

Every step trains on one scheduled batch of sample indices; under N processes each process takes a
slice of it (whole preference pairs, round-robin), and each term of the method's loss is multiplied by
``N * units in the slice / units in the batch`` (:func:`batch_scales`), so that DDP's average of the
processes' gradients is exactly the gradient of one process on the whole batch, for token-averaged
and sequence-averaged terms alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from siu.errors import SiuError
from siu.models.adapter import IGNORE_INDEX, VLM, Encoded

if TYPE_CHECKING:  # the methods import this module's model_inputs (through the reference)
    from siu.unlearn.methods import Method, Part

SCALE_PREFIX = "scale:"  # batch keys holding one part's DDP factor
META_KEYS = ("index", "forget", "pair", "chosen")  # batch keys for the loss; the model never sees them


@dataclass(frozen=True)
class SampleMeta:
    """What the loss needs to know of a sample besides its tokens."""

    forget: bool = True
    pair: int = -1
    chosen: bool = False


def groups_of(metas: Sequence[SampleMeta]) -> list[list[int]]:
    """Sample indices grouped so that a preference pair is never split (every other sample alone)."""
    groups: list[list[int]] = []
    where: dict[int, int] = {}
    for i, meta in enumerate(metas):
        if meta.pair >= 0 and meta.pair in where:
            groups[where[meta.pair]].append(i)
            continue
        if meta.pair >= 0:
            where[meta.pair] = len(groups)
        groups.append([i])
    return groups


def batch_schedule(
    n: int, batch_size: int, steps: int, seed: int, groups: Sequence[Sequence[int]] | None = None
) -> list[list[int]]:
    """Sample indices for each step: shuffled epochs cut into batches (the tail of an epoch is dropped).

    With ``n <= batch_size`` every step uses all samples (in a fixed order). ``groups`` (default: each
    sample alone) are kept together: a batch holds ``batch_size // largest group`` groups.
    """
    if n == 0:
        raise SiuError("the data set is empty; nothing to train on")
    if n <= batch_size:
        return [list(range(n)) for _ in range(steps)]
    groups = [list(g) for g in groups] if groups is not None else [[i] for i in range(n)]
    per_batch = max(1, batch_size // max(len(g) for g in groups))
    rng = random.Random(f"siu-unlearn-batches:{seed}")
    out: list[list[int]] = []
    while len(out) < steps:
        order = list(range(len(groups)))
        rng.shuffle(order)
        for start in range(0, len(order) - per_batch + 1, per_batch):
            out.append([i for g in order[start : start + per_batch] for i in groups[g]])
    return out[:steps]


def unit_count(sample: Encoded, meta: SampleMeta, part: Part, use_token_mask: bool) -> int:
    """How many of ``part``'s units one sample holds (after the next-token shift, for tokens)."""
    if part.role != "all" and meta.forget != (part.role == "forget"):
        return 0
    if part.unit == "sequences":
        return 1
    if part.unit == "pairs":
        return int(meta.pair >= 0 and meta.chosen)  # a pair counts once, by its preferred answer
    pairs = zip(sample.labels[1:], sample.target_mask[1:], strict=True)
    if part.unit == "tokens":
        return sum(label != IGNORE_INDEX for label, _ in pairs)
    return sum(label != IGNORE_INDEX and not (use_token_mask and target) for label, target in pairs)


def batch_scales(
    encoded: Sequence[Encoded],
    metas: Sequence[SampleMeta],
    indices: Sequence[int],
    mine: Sequence[int],
    world: int,
    method: Method,
) -> dict[str, float]:
    """Per part of the loss: the factor that makes the slice ``mine`` of batch ``indices`` DDP-exact.

    Each part is a mean over its units, so ``world * units in the slice / units in the batch`` times
    the slice's mean, averaged over processes, is the whole batch's mean. In one process all are 1.
    """
    token_mask = method.uses_token_mask()
    scales = {}
    for name, part in method.parts.items():
        whole = sum(unit_count(encoded[i], metas[i], part, token_mask) for i in indices)
        slice_ = sum(unit_count(encoded[i], metas[i], part, token_mask) for i in mine)
        scales[name] = world * slice_ / whole if whole else 1.0
    return scales


def collate(
    vlm: VLM, encoded: Sequence[Encoded], metas: Sequence[SampleMeta], indices: Sequence[int]
) -> dict[str, Tensor]:
    """Pad samples ``indices`` into one batch, with their indices and what the loss needs to know of them."""
    batch = vlm.collate([encoded[i] for i in indices])
    batch["index"] = torch.tensor(list(indices), dtype=torch.long)
    batch["forget"] = torch.tensor([metas[i].forget for i in indices], dtype=torch.bool)
    batch["pair"] = torch.tensor([metas[i].pair for i in indices], dtype=torch.long)
    batch["chosen"] = torch.tensor([metas[i].chosen for i in indices], dtype=torch.bool)
    return batch


def _my_slice(indices: Sequence[int], metas: Sequence[SampleMeta], rank: int, world: int) -> list[int]:
    groups = groups_of([metas[i] for i in indices])
    return [indices[k] for j, g in enumerate(groups) if j % world == rank for k in g]


def _micro_slices(mine: list[int], metas: Sequence[SampleMeta], size: int | None) -> list[list[int]]:
    """``mine`` cut into consecutive slices of at most ``size`` samples (a preference pair never cut)."""
    if size is None or size >= len(mine):
        return [mine]
    slices: list[list[int]] = [[]]
    for group in groups_of([metas[i] for i in mine]):
        members = [mine[k] for k in group]
        if slices[-1] and len(slices[-1]) + len(members) > size:
            slices.append([])
        slices[-1].extend(members)
    return slices


def local_batches(
    vlm: VLM,
    encoded: Sequence[Encoded],
    metas: Sequence[SampleMeta],
    schedule: Sequence[Sequence[int]],
    rank: int,
    world: int,
    method: Method,
    micro_batch_size: int | None = None,
) -> list[list[dict[str, Tensor]]]:
    """This process's slice of every scheduled batch, as micro-batches of at most ``micro_batch_size``
    samples (default: one), collated, on the model's device, each with its scales.

    A micro-batch's scales are those of a process slice (``world * its units / the batch's units``),
    so the micro-batches' losses sum to the process's share and the gradients accumulate exactly.
    """
    out = []
    for indices in schedule:
        mine = _my_slice(list(indices), metas, rank, world)
        if not mine:
            raise SiuError(
                f"batch size {len(indices)} is smaller than the {world} processes; raise --batch-size"
            )
        step = []
        for micro in _micro_slices(mine, metas, micro_batch_size):
            batch = vlm.to_device(collate(vlm, encoded, metas, micro))
            # float64 after to_device, which would cast them to the model's (maybe bf16) dtype
            for name, scale in batch_scales(encoded, metas, indices, micro, world, method).items():
                batch[SCALE_PREFIX + name] = torch.tensor(scale, dtype=torch.float64)
            step.append(batch)
        out.append(step)
    return out


def model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """What the model's forward takes from a batch (no labels, masks, indices or scales)."""
    return {
        k: v
        for k, v in VLM.model_inputs(batch).items()
        if k not in META_KEYS and not k.startswith(SCALE_PREFIX)
    }


def scales_of(batch: dict[str, Tensor]) -> dict[str, float]:
    return {k.removeprefix(SCALE_PREFIX): float(v) for k, v in batch.items() if k.startswith(SCALE_PREFIX)}
