"""What decides an unlearning run: :class:`UnlearnConfig` and the training profiles of model sizes.

The method's own options (SIU's alpha and masks, NPO's beta, ...) live in the method's ``Options``
dataclass (:mod:`siu.unlearn.methods`); ``UnlearnConfig.options`` holds the ones set, by name.
Why the tiny profile is what it is: ``docs/tuning-notes.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from siu.errors import SiuError
from siu.unlearn.methods import Method, get_method, make_options, normalise_method
from siu.unlearn.reference import REFERENCES
from siu.unlearn.samples import DataConfig
from siu.unlearn.setup import FULL_SCOPES
from siu.unlearn.stopping import StopRule

PROFILES = ("auto", "paper", "tiny")
MAX_LR = 1.0  # AdamW steps of more than 1 per weight are never fine-tuning; 1e30 once saved 6.8e30 weights
TINY_PARAMS = 50_000_000  # below this a model is a synthetic-world toy, not a real MLLM

# The LLaVA-1.5 set-up reported in the paper (SIU.md section 4); used for every real model.
PAPER_PROFILE: dict[str, Any] = {
    "steps": 6,
    "lr": 3e-4,
    "batch_size": 4,
    "lora": True,
    "lora_r": 128,
    "lora_alpha": 256,
    "lora_dropout": 0.05,
    "warmup_ratio": 0.03,
    "schedule": "cosine",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "full_scope": "language_model",
    "counts": (9, 2, 7, 7),  # the authors' released example
    "identities": 1,  # one made-up name, as in the authors' example
    "views": 1,  # the forget image as it is
    "view_background": False,
    "others_pictures": 0,  # the paper's data: no other concept's picture
    "stop": "never",  # train every step; a method may default to the stopping rule (siu.unlearn.stopping)
}
# The synthetic world's tiny LLaVA (about 1M parameters; language model 128 wide): the paper's LoRA
# shape (r=128, alpha=256, which is full rank here) without dropout, a larger lr, batches of 32 of
# the four targets' 34 samples (each step a fresh shuffle), 10 steps, three made-up identities instead
# of one, target 1 doubled (18) and the image samples spread over nine views of the forget image.
# SIU overrides some of it (siu.unlearn.methods.siu: the stopping rule, lr, other concepts' pictures).
TINY_PROFILE: dict[str, Any] = {
    **PAPER_PROFILE,
    "steps": 10,
    "lr": 1.0e-3,
    "batch_size": 32,
    "lora_dropout": 0.0,
    "warmup_ratio": 0.0,
    "counts": (18, 2, 7, 7),
    "identities": 3,
    "views": 9,
    "view_background": True,
}
PROFILE_FIELDS = tuple(PAPER_PROFILE)
# what differs from one run of a matrix to the next; every other field is shared by its runs
PER_RUN_FIELDS = ("method", "options", "steps", "seed")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class UnlearnConfig:
    """Everything that decides an unlearning run.

    Fields left at ``None`` come from the model's profile (:func:`profile_for`): the paper's LLaVA
    set-up (LoRA r=128, alpha=256, dropout 0.05, AdamW lr 3e-4, cosine, warm-up 0.03, batch 4, 6 steps)
    for real models, a tuned profile for the synthetic world's tiny model.
    """

    method: str = field(default="siu", metadata=_help("the unlearning method (see siu unlearn --help)"))
    options: dict[str, Any] = field(default_factory=dict, metadata=_help("the method's own options"))
    steps: int | None = field(default=None, metadata=_help("optimiser steps (paper: 6)"))
    lr: float | None = field(default=None, metadata=_help("learning rate (paper: 3e-4)"))
    batch_size: int | None = field(default=None, metadata=_help("samples per step (paper: 4)"))
    lora: bool | None = None  # False: full fine-tuning
    lora_r: int | None = field(default=None, metadata=_help("LoRA rank (paper: 128)"))
    lora_alpha: int | None = field(default=None, metadata=_help("LoRA alpha (paper: 256)"))
    lora_dropout: float | None = field(default=None, metadata=_help("LoRA dropout (paper: 0.05)"))
    warmup_ratio: float | None = field(
        default=None, metadata=_help("warm-up share of the steps (paper: 0.03)")
    )
    schedule: str | None = None  # cosine | constant
    weight_decay: float | None = field(default=None, metadata=_help("AdamW weight decay (paper: 0)"))
    max_grad_norm: float | None = field(
        default=None, metadata=_help("gradient clipping norm (default 1.0; 0: off)")
    )
    full_scope: str | None = None  # full fine-tuning: "language_model" | "all" | "vision"
    targets: tuple[int, ...] = (1, 2, 3, 4)
    counts: tuple[int, int, int, int] | None = None  # samples per target; None: the profile's
    identities: int | None = None  # target 1's distinct made-up names; None: the profile's
    views: int | None = None  # views of the forget image the image samples cycle through (1: none)
    view_background: bool | None = None  # views also repaint the background (flat backgrounds only)
    others_pictures: int | None = field(
        default=None,
        metadata=_help(
            "SIU's data: this many other concepts of the benchmark, each named on its own forget image "
            "(default: the profile's; 0 for real models, as in the paper)"
        ),
    )
    seed: int = 0
    gradient_checkpointing: bool = field(
        default=False,
        metadata=_help(
            "recompute activations in the backward pass: far less memory, about a third more time"
        ),
    )
    micro_batch_size: int | None = field(
        default=None,
        metadata=_help(
            "run each batch in slices of this many samples (gradient accumulation; the same result "
            "with less memory; default: the whole batch at once)"
        ),
    )
    stop: str | None = field(
        default=None,
        metadata=_help(
            "auto: stop as soon as the check views of the forget image no longer name the concept (or "
            "the retain data drift out of budget), --steps being the cap; watch: record those checks "
            "but train every step; never: train every step (default: the method's)"
        ),
    )
    stop_rule: dict[str, Any] = field(default_factory=dict)  # StopRule fields to change
    reference: str = "cached"  # p_ref: "cached" (once, before step 1) | "adapter_off" (LoRA, every step)
    overrides: str | None = None  # YAML/JSON file overriding parts of the data
    profile: str = "auto"  # auto | paper | tiny

    def method_instance(self) -> Method:
        """The registered method with this config's options (unknown options are an error)."""
        cls = get_method(self.method)
        return cls(make_options(cls, self.options))

    def check(self) -> None:
        normalise_method(self.method)
        self.method_instance().check()
        if self.profile not in PROFILES:
            raise SiuError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lora_r": self.lora_r,
            "views": self.views,
            "micro_batch_size": self.micro_batch_size,
        }
        for name, value in positive.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SiuError(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and not 0 < self.lr <= MAX_LR:  # NaN and inf fail too
            raise SiuError(f"lr must be in (0, {MAX_LR:g}], got {self.lr!r}")
        if self.identities is not None and (not isinstance(self.identities, int) or self.identities < 1):
            raise SiuError(f"identities must be a positive integer, got {self.identities!r}")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise SiuError(f"lora_alpha must be positive, got {self.lora_alpha!r}")
        if self.lora_dropout is not None and not 0 <= self.lora_dropout < 1:
            raise SiuError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio <= 1:
            raise SiuError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if self.full_scope is not None and self.full_scope not in FULL_SCOPES:
            raise SiuError(f"full_scope must be one of {', '.join(FULL_SCOPES)}; got {self.full_scope!r}")
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < float("inf"):
                raise SiuError(f"{name} must be a finite non-negative number, got {value!r}")
        self.stop_settings().check()
        if self.reference not in REFERENCES:
            raise SiuError(f"reference must be one of {', '.join(REFERENCES)}; got {self.reference!r}")
        if self.reference == "adapter_off" and self.lora is False:
            raise SiuError("reference 'adapter_off' needs LoRA; full fine-tuning uses the cached reference")
        if self.schedule is not None and self.schedule not in ("cosine", "constant"):
            raise SiuError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        counts = tuple(self.counts) if self.counts is not None else PAPER_PROFILE["counts"]
        DataConfig(
            counts=counts,
            seed=self.seed,
            targets=tuple(self.targets),
            identities=self.identities or 1,
            others_pictures=0 if self.others_pictures is None else self.others_pictures,
        ).check()

    def stop_settings(self) -> StopRule:
        """The stopping rule of this config (mode ``never`` until resolved against a profile)."""
        known = {f.name for f in dataclasses.fields(StopRule)} - {"mode"}
        unknown = sorted(set(self.stop_rule) - known)
        if unknown:
            raise SiuError(f"unknown stop rule setting(s) {unknown}; known: {', '.join(sorted(known))}")
        return StopRule(mode=self.stop or "never", **self.stop_rule)

    def resolved(self, model_type: str, n_params: int) -> tuple[UnlearnConfig, str]:
        """A copy with every ``None`` field taken from the profile (and the method's own overrides of
        it), and the profile's name."""
        if self.profile == "auto":
            name, base = ("tiny" if n_params < TINY_PARAMS else "paper"), profile_for(model_type, n_params)
        else:
            name, base = self.profile, dict(TINY_PROFILE if self.profile == "tiny" else PAPER_PROFILE)
        overrides = dict(get_method(self.method).profile_overrides.get(name, {}))
        # the method's own options and stopping settings may have a profile's default too; the user's win
        options = {**overrides.pop("options", {}), **self.options}
        stop_rule = {**overrides.pop("stop_rule", {}), **self.stop_rule}
        base.update(overrides)
        values = {k: (base[k] if getattr(self, k) is None else getattr(self, k)) for k in PROFILE_FIELDS}
        return dataclasses.replace(self, options=options, stop_rule=stop_rule, **values), name

    def record(self) -> dict[str, Any]:
        """JSON-ready, with every option of the method (the defaults too), as ``run.json`` keeps it."""
        data = asdict(self)
        data["method"] = normalise_method(self.method)
        data["options"] = asdict(self.method_instance().options)
        data["targets"] = list(self.targets)
        data["counts"] = list(self.counts) if self.counts is not None else None
        return data


def profile_for(model_type: str, n_params: int) -> dict[str, Any]:
    """Training defaults for a model family and size.

    Real models (``n_params >= 50M``; LLaVA-1.5 and every other family, for which the paper reports
    nothing else) get the paper's LLaVA set-up: LoRA r=128, alpha=256, dropout 0.05 on the language
    model's linear layers, AdamW lr 3e-4, cosine schedule, warm-up 0.03, batch 4, 6 steps, one
    made-up identity. The synthetic world's tiny LLaVA gets the profile tuned on the default world:
    the same LoRA shape without dropout, lr 1e-3, batches of 32, 10 steps, three made-up identities,
    18 target-1 samples, nine views of the forget image (resized, repainted backgrounds).
    """
    del model_type  # one profile per size for now; the argument leaves room for family-specific ones
    return dict(TINY_PROFILE if n_params < TINY_PARAMS else PAPER_PROFILE)
