"""What an unlearning method is: its options, its data, its reference needs, its loss and how it reduces.

A method is one module in this package that defines a :class:`Method` subclass and decorates it
with :func:`register`. Everything else (``siu unlearn --method`` and its per-method flags,
``--config run.yaml``, ``siu bench run --methods``, the acceptance script, ``run.json``, DDP scaling)
is derived from what the class declares:

* ``Options``: a dataclass whose fields (defaults, ``metadata={"help": ...}``) become CLI flags
  (``--npo-beta``; a bool ``use_x`` becomes ``--x/--no-x``) and YAML keys;
* ``data``: which samples it trains on (:mod:`siu.unlearn.data`'s builders): the *forget set* is
  built from the concept's one forget image; the *retain set* is text knowledge (SIU's targets 3-4)
  and other concepts named on their own forget images;
* ``reference``: whether the loss needs the original model's logits (never a second model copy);
* ``parts``: each term of the loss is a mean over units (tokens or sequences) of the forget or
  retain samples; from this the runner computes, for every batch slice, the factor that makes N
  processes train exactly like one (:func:`siu.unlearn.batches.batch_scales`);
* ``loss``: a function of logits, built from the pure functions of :mod:`siu.unlearn.losses`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from siu.errors import SiuError

ROLES = ("all", "forget", "retain")
UNITS = ("tokens", "kept_tokens", "sequences", "pairs")


@dataclass(frozen=True)
class Part:
    """One term of a loss: a mean over ``unit`` of the samples with ``role``.

    ``tokens``: supervised answer positions; ``kept_tokens``: those outside the target phrase (SIU's
    token mask K_S, when it is on); ``sequences``: samples; ``pairs``: preference pairs (two samples).
    """

    role: str = "all"
    unit: str = "tokens"

    def __post_init__(self) -> None:
        if self.role not in ROLES or self.unit not in UNITS:
            raise ValueError(
                f"Part(role={self.role!r}, unit={self.unit!r}): role in {ROLES}, unit in {UNITS}"
            )


@dataclass
class LossInputs:
    """What a method's loss sees of one batch slice (all tensors on the model's device).

    ``logits``/``labels``/``target_mask`` are unshifted (B, T, V) / (B, T) / (B, T); ``hidden`` is the
    language model's hidden state (B, T, D) after the layer the method reads (``Method.feature_layer``),
    and then ``ref_hidden`` the original's there; ``forget`` (B,)
    marks forget-set rows (the rest are retain rows); ``pair`` (B,) numbers preference pairs (-1 for
    none) and ``chosen`` (B,) marks the preferred answer of a pair; ``ref_logits`` is the original
    model's logits where the method asks for them (valid at supervised positions); ``scales`` has one
    DDP factor per part (1.0 in one process).
    """

    logits: Tensor
    labels: Tensor
    target_mask: Tensor
    forget: Tensor
    pair: Tensor
    chosen: Tensor
    scales: dict[str, float]
    ref_logits: Tensor | None = None
    vocab_mask: Tensor | None = None
    hidden: Tensor | None = None
    ref_hidden: Tensor | None = None


def retain_weight_field() -> Any:
    """The retain term's weight, one option (and one ``--retain-weight`` flag) for every method with one."""
    return dataclasses.field(
        default=1.0,
        metadata={"help": "methods with a retain term: weight of the retain-set cross-entropy (1.0)"},
    )


@dataclass
class NoOptions:
    """This method has no options of its own."""


class Method:
    """Base of every registered method; subclasses set the class attributes and ``loss``."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    Options: ClassVar[type] = NoOptions
    data: ClassVar[str]  # one of siu.unlearn.data.DATA_KINDS
    reference: ClassVar[bool] = False
    vocab_mask: ClassVar[bool] = False  # the loss needs K_V (the concept's name tokens)
    parts: ClassVar[dict[str, Part]]
    # training values that differ from a profile's for this method, e.g. {"tiny": {"lr": 5e-4}}, its
    # own options' defaults under that profile, {"tiny": {"options": {"retain_weight": 3.0}}} (a
    # method's fair default on the synthetic world's model, from a documented sweep), and stopping
    # settings, {"tiny": {"stop_rule": {"patience": 2}}}; the user's values win over all of them
    profile_overrides: ClassVar[dict[str, dict[str, Any]]] = {}
    signed: ClassVar[tuple[str, ...]] = ()  # options that may be negative
    positive: ClassVar[tuple[str, ...]] = ()  # options that must be > 0 (e.g. an inverse temperature)
    rank: ClassVar[int] = 100  # listing order (the paper's method and baselines first)

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def loss(self, x: LossInputs) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    # ---- hooks for methods that need more than logits (defaults: nothing) -------------------------
    def feature_layer(self, model: torch.nn.Module) -> int | None:
        """The decoder layer whose output hidden state the loss reads (and the reference caches); None: logits."""
        return None

    def lora_upto(self, model: torch.nn.Module) -> int | None:
        """The last decoder layer that gets LoRA adapters (None: every layer)."""
        return None

    def prepare(
        self, model: torch.nn.Module, steps: Sequence[Sequence[dict[str, Tensor]]], seed: int
    ) -> None:
        """Called once before the first step, with the trainable model (the original weights) and this
        process's batches, step by step (each step's batch as its micro-batches), e.g. to draw a random
        direction or mask gradients."""

    def record(self) -> dict[str, Any]:
        """What ``prepare`` decided, for run.json (e.g. the steered layer, the share of weights masked)."""
        return {}

    def check(self) -> None:
        """Raise :class:`SiuError` on an invalid option: every number finite and >= 0 (unless in ``signed``),
        and > 0 where in ``positive``."""
        for f in dataclasses.fields(self.options):
            value = getattr(self.options, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not (value == value and abs(value) != float("inf")) or (
                value < 0 and f.name not in self.signed
            ):
                raise SiuError(f"{self.name}: {f.name} must be a finite non-negative number, got {value!r}")
            if f.name in self.positive and not value > 0:
                raise SiuError(f"{f.name} must be positive, got {value!r}")

    def uses_token_mask(self) -> bool:
        """Whether ``kept_tokens`` excludes the target phrase (SIU's K_S); other methods count all tokens."""
        return bool(getattr(self.options, "use_token_mask", True))


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry (its module is found and imported automatically)."""
    if not dataclasses.is_dataclass(cls.Options):
        raise TypeError(f"{cls.__name__}.Options must be a dataclass")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"two methods are named {cls.name!r}")
    METHODS[cls.name] = cls
    return cls


def options_of(cls: type[Method]) -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(cls.Options))


def make_options(cls: type[Method], values: dict[str, Any]) -> Any:
    """The method's Options from ``values`` (unknown keys are an error naming the known ones)."""
    known = {f.name for f in options_of(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SiuError(
            f"method {cls.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(sorted(known)) or 'none'}"
        )
    return cls.Options(**values)
