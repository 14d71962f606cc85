"""``siu unlearn``: unlearn one concept from a VLM with SIU (or a baseline), from one image.

The flow of :func:`unlearn`:

1. check the inputs (benchmark, concept, forget image, override file, output directory) before any
   model is loaded, so that a typo costs nothing;
2. load the original model with :meth:`VLM.load` and pick the training profile of its family
   (:func:`profile_for`); every profile value can be overridden in :class:`UnlearnConfig`;
3. build the data: SIU's four targets (:func:`build_siu_data`) or a baseline's (:func:`build_baseline_data`);
   the original model fills in what the records lack (facts, the visible description);
4. dry run: print the data and stop. Otherwise train with :func:`siu.training.train` (the one loop:
   AdamW, warm-up + cosine, clipping, NaN guard) and write the model, the processor and ``run.json``
   atomically (temporary directory, then rename).

The reference distribution ``p_ref`` (needed by SIU's DMK and by GA+KL) never costs a second model.
By default (``reference="cached"``) the original model's logits are computed once, before the first
step, on the fixed data set, and kept only at the supervised positions: the data never changes, so
this is exact, and each step then costs what plain fine-tuning costs (benchmarks/unlearn_step_cost.py).
With LoRA, ``reference="adapter_off"`` instead runs the same model with its adapters disabled at
every step (one extra forward pass per step, nothing stored).

The tiny profile (synthetic world) was tuned on the default world (all 24 concepts, 8 held-out images
each, scripts/unlearn_acceptance.py; the micro world checked too). What the tiny model taught us:
* the made-up identity must be *ordinary to the model*: a name it already knows how to say. Before the
  world's LM read about ordinary people (siu.names), "Jacob Campbell" was " J|ac|o|b C|am|p|b|ell" to
  it; training those letter-by-letter steps leaked into the concepts' own names ("Tamdra" became
  "Tamdrawarren") and most of each step went into spelling instead of into the identity. With the
  names as whole tokens that the model already says, the earlier profile (nine identities, five
  views, lr 1.2e-3) leaves 0.15 of the held-out pictures recognised (seed 0) instead of 0.19 (seeds
  0-2 on the earlier world), and it could now be retuned; ``name_leak_risks`` and the likelihood
  ranking remain as guards for other tokenizers;
* data in the model's own words: target 1 answers with the original's own prefix ("This is ") and the
  made-up names it finds likeliest, so the loss goes into the identity;
* one made-up name for every prompt pulls *other* concepts' pictures to that name (others 0.91-0.95);
  three names spread the pull while each still beats the forgotten name at the first name token
  (nine spread it so thin that the concept's own name often stayed the likeliest: 0.15 still named);
* pictures of the concept at another scale or on another background are the hard ones: the tiny vision
  tower is not invariant to them, so the image samples cycle through nine views of the forget image
  (three sizes x three backgrounds, siu.unlearn.views; target 2, whose answer describes the
  background, keeps it), and target 1 has 18 samples instead of 9 so that each view is asked twice;
* lr trades forgetting against the rest (others, facts): 0.9e-3 to 1.2e-3 with these data; 1e-3 keeps
  a margin on all three goals over seeds 0-2. Another pre-trained world model wants another lr: on the
  world of seed 1 lr 1e-3 overshoots (others 0.928) and 0.7e-3 fits (0.021 / 0.970 / 0.975). LoRA on
  the projector or the vision tower does not forget at all; r <= 16 barely forgets; more steps are
  not needed (the issue allows 10).
Figures: README "Results and known limits" and scripts/unlearn_acceptance.py.

Under ``accelerate launch`` the model is wrapped by ``Accelerator.prepare_model`` (DDP when there are
several processes: ``train()``'s ``loss.backward()`` then all-reduces the gradients); every process
trains on its slice of each batch and only the main process prints and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import time
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from siu.bench.images import open_image
from siu.bench.load import Benchmark, load_benchmark
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.models.adapter import IGNORE_INDEX, VLM, Encoded
from siu.outputs import versions, write_atomically
from siu.training import TrainConfig, TrainLog, train
from siu.unlearn.data import (
    DataConfig,
    UnlearnSample,
    build_baseline_data,
    build_siu_data,
    dataset_record,
    format_dataset,
    load_overrides,
)
from siu.unlearn.losses import (
    cross_entropy,
    ga_kl,
    gradient_ascent,
    kl_to_reference,
    preference_optimization,
    siu_loss,
    vocab_mask_for_names,
)
from siu.unlearn.views import with_views

METHODS = ("siu", "po", "ga", "ga_kl")
METHODS_WITH_REFERENCE = ("siu", "ga_kl")
PROFILES = ("auto", "paper", "tiny")
REFERENCES = ("cached", "adapter_off")
TINY_PARAMS = 50_000_000  # below this a model is a synthetic-world toy, not a real MLLM
RUN_FILE = "run.json"

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
}
# The synthetic world's tiny LLaVA (about 1M parameters; language model 128 wide): the paper's LoRA
# shape (r=128, alpha=256, which is full rank here) without dropout, a larger lr, batches of 32 of
# the 34 samples (each step a fresh shuffle), 10 steps, three made-up identities instead of one,
# target 1 doubled (18) and the image samples spread over nine views of the forget image. See the
# tuning notes in the module docstring.
TINY_PROFILE: dict[str, Any] = {
    "steps": 10,
    "lr": 1.0e-3,
    "batch_size": 32,
    "lora": True,
    "lora_r": 128,
    "lora_alpha": 256,
    "lora_dropout": 0.0,
    "warmup_ratio": 0.0,
    "schedule": "cosine",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "full_scope": "language_model",
    "counts": (18, 2, 7, 7),
    "identities": 3,
    "views": 9,
    "view_background": True,
}
PROFILE_FIELDS = tuple(PAPER_PROFILE)


@dataclass
class UnlearnConfig:
    """Everything that decides an unlearning run.

    Fields left at ``None`` come from the model family's profile (:func:`profile_for`): the paper's
    LLaVA set-up (LoRA r=128, alpha=256, dropout 0.05, AdamW lr 3e-4, cosine, warm-up 0.03, batch 4,
    6 steps) for real models, a tuned full fine-tuning profile for the synthetic world's tiny model.
    """

    method: str = "siu"  # siu | po | ga | ga_kl
    steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None  # with fewer samples than this, every step uses all of them
    lora: bool | None = None  # False: full fine-tuning
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float | None = None
    warmup_ratio: float | None = None
    schedule: str | None = None  # cosine | constant
    weight_decay: float | None = None
    max_grad_norm: float | None = None
    full_scope: str | None = (
        None  # full fine-tuning: "language_model" (vision tower, projector frozen) | "all"
    )
    alpha: float = 0.9  # SIU: weight of the cross-entropy
    beta: float = 0.75  # SIU: weight of the Dual Masked KL
    use_token_mask: bool = True
    use_vocab_mask: bool = True
    targets: tuple[int, ...] = (1, 2, 3, 4)
    counts: tuple[int, int, int, int] | None = None  # samples per target; None: the profile's
    identities: int | None = None  # target 1's distinct made-up names; None: the profile's
    views: int | None = None  # views of the forget image the image samples cycle through (1: none)
    view_background: bool | None = None  # views also repaint the background (flat backgrounds only)
    seed: int = 0
    kl_weight: float = 1.0  # GA+KL: weight of the KL term
    reference: str = "cached"  # p_ref: "cached" (once, before step 1) | "adapter_off" (LoRA, every step)
    overrides: str | None = None  # YAML/JSON file overriding parts of the data
    profile: str = "auto"  # auto | paper | tiny

    def check(self) -> None:
        if self.method not in METHODS:
            raise SiuError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.profile not in PROFILES:
            raise SiuError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lora_r": self.lora_r,
            "views": self.views,
        }
        for name, value in positive.items():
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SiuError(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise SiuError(f"lr must be positive, got {self.lr!r}")
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
            if value is not None and not value >= 0:
                raise SiuError(f"{name} must be non-negative, got {value!r}")
        if self.reference not in REFERENCES:
            raise SiuError(f"reference must be one of {', '.join(REFERENCES)}; got {self.reference!r}")
        if self.reference == "adapter_off" and self.lora is False:
            raise SiuError("reference 'adapter_off' needs LoRA; full fine-tuning uses the cached reference")
        if self.schedule is not None and self.schedule not in ("cosine", "constant"):
            raise SiuError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("alpha", "beta", "kl_weight"):
            if not getattr(self, name) >= 0:
                raise SiuError(f"{name} must be non-negative, got {getattr(self, name)!r}")
        counts = tuple(self.counts) if self.counts is not None else PAPER_PROFILE["counts"]
        DataConfig(
            counts=counts, seed=self.seed, targets=tuple(self.targets), identities=self.identities or 1
        ).check()

    def resolved(self, model_type: str, n_params: int) -> tuple[UnlearnConfig, str]:
        """A copy with every ``None`` field taken from the profile, and the profile's name."""
        if self.profile == "auto":
            name, base = ("tiny" if n_params < TINY_PARAMS else "paper"), profile_for(model_type, n_params)
        else:
            name, base = self.profile, dict(TINY_PROFILE if self.profile == "tiny" else PAPER_PROFILE)
        values = {k: (base[k] if getattr(self, k) is None else getattr(self, k)) for k in PROFILE_FIELDS}
        return dataclasses.replace(self, **values), name


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


def normalise_method(method: str) -> str:
    key = method.strip().lower().replace("+", "_").replace("-", "_")
    if key not in METHODS:
        raise SiuError(f"unknown method {method!r}; known: siu, po, ga, ga_kl")
    return key


# ----------------------------------------------------------------------------- inputs
def check_names_encodable(tokenizer: Any, names: Sequence[str]) -> None:
    """Raise :class:`SiuError` if the tokenizer cannot represent a name (unknown token, or lossy)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    for name in names:
        text = name.strip()
        ids = tokenizer.encode(text, add_special_tokens=False)
        if not ids or (unk is not None and unk in ids):
            raise SiuError(
                f"the tokenizer cannot represent the concept name {name!r} (it encodes to the unknown "
                "token), so the vocabulary mask cannot cover it; use --no-vocab-mask or a model whose "
                "tokenizer covers the name"
            )
        back = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if unicodedata.normalize("NFC", back.strip()) != unicodedata.normalize("NFC", text):
            raise SiuError(
                f"the tokenizer cannot represent the concept name {name!r}: it decodes back to "
                f"{back.strip()!r}; use --no-vocab-mask or a model whose tokenizer covers the name"
            )


def concept_without_bench(name: str) -> Concept:
    """A bare concept record for ``--image`` without ``--bench``: facts come from overrides or the model."""
    if not name.strip():
        raise SiuError("--concept must not be empty")
    return Concept(
        name=name.strip(),
        aliases=[],
        category="",
        facts=[],
        special_tokens=[],
        images=[],
        recognition_prompts=[],
        multilingual_prompts=[],
        multihop=[],
        fact_questions=[],
    )


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_out(out: Path, inputs: Sequence[Path], model_dir: Path | None, overwrite: bool) -> None:
    """Refuse an output directory that would overwrite the model, the benchmark or anything unasked."""
    resolved = out.resolve()
    if model_dir is not None and _inside(resolved, model_dir.resolve()):
        raise SiuError(f"--out {out} is the input model directory or inside it; choose another directory")
    for path in inputs:
        if _inside(path.resolve(), resolved):
            raise SiuError(f"--out {out} contains the input {path}; choose another directory")
    if resolved.exists() and not resolved.is_dir():
        raise SiuError(f"--out {out} exists and is not a directory")
    if resolved.is_dir() and any(resolved.iterdir()) and not overwrite:
        raise SiuError(f"--out {out} exists and is not empty; pass --overwrite or choose another directory")


# ----------------------------------------------------------------------------- model set-up
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


def apply_lora(model: torch.nn.Module, cfg: UnlearnConfig) -> torch.nn.Module:
    """Wrap ``model`` in a peft LoRA model on the language model's linear layers."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=language_model_linear_names(model),
        bias="none",
    )
    with warnings.catch_warnings():
        # peft asks transformers v5 for the deprecated is_gradient_checkpointing; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


FULL_SCOPES = ("all", "language_model", "vision")


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


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP (or similar) wrapper."""
    return getattr(model, "module", model)


def _forward_logits(model: torch.nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return model(**_model_inputs(batch)).logits


# Keys that local_batches adds for the loss; the model never sees them.
META_KEYS = ("index", "ce_scale", "dmk_scale")


def _model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in VLM.model_inputs(batch).items() if k not in META_KEYS}


def _supervised_positions(labels: Tensor) -> Tensor:
    """Positions ``p`` whose logits predict a label (``labels[p + 1] != -100``), for one (T,) row."""
    return (labels[1:] != IGNORE_INDEX).nonzero(as_tuple=True)[0]


class Reference:
    """``p_ref`` logits for a batch, without a second copy of the model.

    ``lora``: the trained model itself with its adapters disabled (exactly the original weights).
    ``cached``: logits of the original model computed by :meth:`precompute` before training, stored
    per sample at the supervised positions only; other positions of the returned tensor are zero and
    never read by the losses.
    """

    def __init__(self, mode: str) -> None:
        if mode not in ("lora", "cached"):
            raise ValueError(f"mode must be 'lora' or 'cached', got {mode!r}")
        self.mode = mode
        self.rows: dict[int, Tensor] = {}

    @staticmethod
    @torch.no_grad()
    def _eval_logits(model: torch.nn.Module, batch: dict[str, Tensor]) -> Tensor:
        was_training = model.training
        model.eval()
        try:
            return _forward_logits(model, batch).detach()
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
        if self.mode == "lora":
            peft_model = _unwrap(model)
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


LossFn = Callable[[torch.nn.Module, dict[str, Tensor]], tuple[Tensor, dict[str, float]]]


def make_loss_fn(cfg: UnlearnConfig, reference: Reference | None, vocab_mask: Tensor | None) -> LossFn:
    """The loss that ``train()`` calls: runs the model (and the reference) and applies the method's loss."""
    method = cfg.method

    def loss_fn(model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = _forward_logits(model, batch)
        labels = batch["labels"]
        # 1.0 in one process; under DDP they turn this slice's means into its share of the whole
        # batch's means (see batch_scales), so N processes train exactly like one.
        ce_scale = float(batch["ce_scale"]) if "ce_scale" in batch else 1.0
        dmk_scale = float(batch["dmk_scale"]) if "dmk_scale" in batch else 1.0
        if method == "po":
            loss = preference_optimization(logits, labels)
            return loss * ce_scale, {"ce": float(loss.detach())}
        if method == "ga":
            loss = gradient_ascent(logits, labels)
            return loss * ce_scale, {"ce": -float(loss.detach())}
        assert reference is not None
        ref = reference.logits(model, batch, logits)
        if method == "ga_kl":
            loss = (
                ga_kl(logits, ref, labels, kl_weight=cfg.kl_weight) * ce_scale
            )  # CE and KL count the same positions
            with torch.no_grad():
                parts = {
                    "ce": float(cross_entropy(logits, labels)),
                    "kl": float(kl_to_reference(logits, ref, labels)),
                }
            return loss, parts
        assert vocab_mask is not None
        return siu_loss(
            logits,
            ref,
            labels,
            batch["target_mask"],
            vocab_mask.to(logits.device),
            alpha=cfg.alpha * ce_scale,
            beta=cfg.beta * dmk_scale,
            use_token_mask=cfg.use_token_mask,
            use_vocab_mask=cfg.use_vocab_mask,
        )

    return loss_fn


# ----------------------------------------------------------------------------- batches
def batch_schedule(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Sample indices for each step: shuffled epochs cut into batches (the tail of an epoch is dropped).

    With ``n <= batch_size`` every step uses all samples (in a fixed order).
    """
    if n == 0:
        raise SiuError("the data set is empty; nothing to train on")
    if n <= batch_size:
        return [list(range(n)) for _ in range(steps)]
    rng = random.Random(f"siu-unlearn-batches:{seed}")
    out: list[list[int]] = []
    while len(out) < steps:
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n - batch_size + 1, batch_size):
            out.append(order[start : start + batch_size])
    return out[:steps]


def _collate(vlm: VLM, encoded: Sequence[Encoded], indices: Sequence[int]) -> dict[str, Tensor]:
    batch = vlm.collate([encoded[i] for i in indices])
    batch["index"] = torch.tensor(list(indices), dtype=torch.long)
    return batch


def _counted(sample: Encoded, use_token_mask: bool) -> tuple[int, int]:
    """Positions that the cross-entropy and the DMK of one sample average over (after the shift)."""
    pairs = list(zip(sample.labels[1:], sample.target_mask[1:], strict=True))
    ce = sum(label != IGNORE_INDEX for label, _ in pairs)
    dmk = sum(label != IGNORE_INDEX and not (use_token_mask and target) for label, target in pairs)
    return ce, dmk


def batch_scales(
    encoded: Sequence[Encoded], indices: Sequence[int], mine: Sequence[int], world: int, use_token_mask: bool
) -> tuple[float, float]:
    """Factors that make the mean loss of a slice ``mine`` of a batch ``indices`` DDP-exact.

    DDP averages the gradients of the ``world`` processes. Each loss is a mean over counted positions,
    so ``world * n_slice / n_batch`` times the slice's mean, averaged over processes, is the mean over
    the whole batch: the same gradient as one process on the whole batch. In one process both are 1.
    """
    whole = [_counted(encoded[i], use_token_mask) for i in indices]
    part = [_counted(encoded[i], use_token_mask) for i in mine]
    scales = []
    for k in (0, 1):
        total = sum(c[k] for c in whole)
        scales.append(world * sum(c[k] for c in part) / total if total else 1.0)
    return scales[0], scales[1]


def local_batches(
    vlm: VLM,
    encoded: Sequence[Encoded],
    schedule: Sequence[Sequence[int]],
    rank: int,
    world: int,
    use_token_mask: bool = True,
) -> list[dict[str, Tensor]]:
    """This process's slice of every scheduled batch, collated and on the model's device."""
    out = []
    for indices in schedule:
        mine = list(indices)[rank::world]
        if not mine:
            raise SiuError(
                f"batch size {len(indices)} is smaller than the {world} processes; raise --batch-size"
            )
        batch = vlm.to_device(_collate(vlm, encoded, mine))
        # float64 after to_device, which would cast them to the model's (maybe bf16) dtype
        ce_scale, dmk_scale = batch_scales(encoded, indices, mine, world, use_token_mask)
        batch["ce_scale"] = torch.tensor(ce_scale, dtype=torch.float64)
        batch["dmk_scale"] = torch.tensor(dmk_scale, dtype=torch.float64)
        out.append(batch)
    return out


# ----------------------------------------------------------------------------- records and writing
def loss_table(losses: Sequence[dict[str, float]]) -> str:
    from siu.report.table import format_table

    keys = [k for k in ("ce", "dmk", "kl") if any(k in r for r in losses)]
    rows = [
        [
            int(r["step"]),
            f"{r['loss']:.4f}",
            *(f"{r[k]:.4f}" if k in r else "" for k in keys),
            f"{r['lr']:.2e}",
        ]
        for r in losses
    ]
    return format_table(["step", "loss", *keys, "lr"], rows)


def _step_row(record: dict[str, float], keys: Sequence[str]) -> str:
    cells = [f"{int(record['step']):>4}", f"{record['loss']:>9.4f}"]
    cells += [f"{record[k]:>9.4f}" if k in record else f"{'':>9}" for k in keys]
    cells.append(f"{record['lr']:>9.2e}")
    return "  ".join(cells)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass


def _accelerator() -> Any:
    try:
        from accelerate import Accelerator, DistributedDataParallelKwargs
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return None
    # A process whose slice of a batch has no image leaves the vision weights unused in that step.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    # Several processes without a GPU (torchrun / accelerate launch on CPU): accelerate only sets up
    # gloo when told that the processes are CPU processes.
    cpu_processes = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(cpu=cpu_processes, kwargs_handlers=handlers)


# ----------------------------------------------------------------------------- the run
def build_data(
    cfg: UnlearnConfig,
    concept: Concept,
    image: Any,
    bench: Benchmark | None,
    overrides: dict[str, Any] | None,
    original: VLM | None,
) -> list[UnlearnSample]:
    data_cfg = DataConfig(
        counts=tuple(cfg.counts),  # type: ignore[arg-type]
        seed=cfg.seed,
        targets=tuple(cfg.targets),
        overrides=overrides,
        identities=cfg.identities or 1,
    )
    if cfg.method == "siu":
        samples = build_siu_data(concept, image, bench, data_cfg, original=original)
    else:
        samples = build_baseline_data(cfg.method, concept, image, data_cfg, bench=bench)
    # Views come last, so that what is built from the image (the model's own naming prefix, its
    # likeliest made-up names, the visible description) is built from the forget image itself.
    return with_views(samples, image, cfg.views or 1, cfg.seed, bool(cfg.view_background))


def unlearn(
    model_path: str | Path,
    concept: str,
    image_path: str | Path | None,
    bench_path: str | Path | None,
    cfg: UnlearnConfig,
    out: str | Path,
    overwrite: bool = False,
    adapter_only: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    log: Callable[..., Any] = print,
) -> dict[str, Any]:
    """Unlearn ``concept`` from the model at ``model_path``; write the result to ``out``.

    Returns the run record (what ``run.json`` holds); a dry run returns the data set and config
    without training or writing anything.
    """
    start = time.perf_counter()
    cfg = dataclasses.replace(cfg, method=normalise_method(cfg.method))
    cfg.check()
    if adapter_only and cfg.lora is False:
        raise SiuError("--adapter-only needs LoRA; full fine-tuning has no adapter to save")
    out = Path(out)
    model_dir = Path(model_path)

    # 1. inputs, cheapest first
    if image_path is None and bench_path is None:
        raise SiuError("give the forget image with --image or a benchmark with --bench")
    bench = load_benchmark(bench_path) if bench_path is not None else None
    record = bench.concept(concept) if bench is not None else concept_without_bench(concept)
    if image_path is not None:
        image = open_image(image_path)
        image_name = str(image_path)
    else:
        assert bench is not None
        image = bench.load_image(record, record.forget_image)
        image_name = str(bench.image_path(record, record.forget_image))
    overrides = load_overrides(cfg.overrides) if cfg.overrides else None
    n_others = (cfg.counts or PAPER_PROFILE["counts"])[3]  # target 4's count is 7 in every profile
    needs_others = bench is None and cfg.method == "siu" and 4 in cfg.targets and n_others > 0
    if needs_others and not (overrides or {}).get("other_facts"):
        raise SiuError(
            "without --bench, target 4 (facts about other concepts) needs other_facts in an "
            "--overrides file; or leave it out with --targets 1,2,3"
        )
    inputs = [
        model_dir,
        *([Path(bench_path)] if bench_path else []),
        *([Path(image_path)] if image_path else []),
    ]
    if cfg.overrides:
        inputs.append(Path(cfg.overrides))
    check_out(out, inputs, model_dir if model_dir.exists() else None, overwrite)

    # 2. model and profile
    _seed_everything(cfg.seed)
    vlm = VLM.load(model_path)
    n_params = sum(p.numel() for p in vlm.model.parameters())
    model_type = str(getattr(vlm.model.config, "model_type", ""))
    cfg, profile = cfg.resolved(model_type, n_params)
    if adapter_only and not cfg.lora:
        raise SiuError(f"--adapter-only needs LoRA, but the {profile} profile fine-tunes fully; add --lora")
    assert cfg.steps is not None and cfg.batch_size is not None and cfg.lr is not None

    vocab_mask = None
    if cfg.method == "siu":
        vocab_size = vlm.model.get_output_embeddings().weight.shape[0]
        if cfg.use_vocab_mask:
            check_names_encodable(vlm.tokenizer, record.names)
        vocab_mask = vocab_mask_for_names(vlm.tokenizer, record.names, vocab_size)

    # 3. data (the original model answers what the records lack)
    samples = build_data(cfg, record, image, bench, overrides, vlm)
    summary = {
        "method": cfg.method,
        "profile": profile,
        "config": _config_record(cfg),
        "concept": {"name": record.name, "aliases": record.aliases, "slug": record.slug or None},
        "overrides_data": overrides,
        "dataset": dataset_record(samples),
    }
    if dry_run:
        log(format_dataset(samples))
        log(
            f"dry run: {len(samples)} samples, {cfg.method} with the {profile} profile "
            f"({'LoRA r=' + str(cfg.lora_r) if cfg.lora else 'full fine-tuning'}, {cfg.steps} steps, "
            f"lr {cfg.lr:g}, batch {min(cfg.batch_size, len(samples))}); nothing trained or written"
        )
        return {"dry_run": True, **summary}

    # 4. train
    accelerator = _accelerator()
    rank, world = 0, 1
    if accelerator is not None:
        rank, world = accelerator.process_index, accelerator.num_processes
        vlm.model.to(accelerator.device)
    main = rank == 0
    say = log if main else (lambda *_a, **_k: None)

    _seed_everything(cfg.seed)
    model = vlm.model
    if cfg.lora:
        model = apply_lora(model, cfg)
    else:
        set_full_scope(model, cfg.full_scope or "language_model")
    encoded = [vlm.encode_one(s.sample) for s in samples]
    schedule = batch_schedule(len(encoded), cfg.batch_size, cfg.steps, cfg.seed)
    batches = local_batches(vlm, encoded, schedule, rank, world, cfg.use_token_mask)

    reference = None
    if cfg.method in METHODS_WITH_REFERENCE:
        if cfg.reference == "adapter_off" and not cfg.lora:
            raise SiuError(f"reference 'adapter_off' needs LoRA, but the {profile} profile fine-tunes fully")
        reference = Reference("lora" if cfg.reference == "adapter_off" else "cached")
        if reference.mode == "cached":
            # LoRA starts as the identity, but disabling it makes "original model" true by construction
            with model.disable_adapter() if cfg.lora else contextlib.nullcontext():  # type: ignore[operator]
                reference.precompute(model, batches)
    if accelerator is not None:
        model = accelerator.prepare_model(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    keys = [k for k in ("ce", "dmk", "kl") if k in _parts_of(cfg.method)]
    say(
        f"unlearning {record.name!r} with {cfg.method} ({profile} profile, "
        f"{'LoRA r=' + str(cfg.lora_r) if cfg.lora else 'full fine-tuning'}, {trainable:,} of {n_params:,} "
        f"parameters trained): {len(samples)} samples, {cfg.steps} steps"
    )
    if progress:
        say("  ".join([f"{'step':>4}", f"{'loss':>9}", *(f"{k:>9}" for k in keys), f"{'lr':>9}"]))
    train_log: TrainLog = train(
        model,
        iter(batches),
        make_loss_fn(cfg, reference, vocab_mask),
        TrainConfig(
            steps=cfg.steps,
            lr=cfg.lr,
            warmup_ratio=cfg.warmup_ratio or 0.0,
            weight_decay=cfg.weight_decay or 0.0,
            schedule=cfg.schedule or "cosine",
            max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm is not None else 1.0,
        ),
        desc=f"unlearning ({cfg.method})",
        progress=False,
        on_step=(lambda _step, rec: say(_step_row(rec, keys))) if progress else None,
    )
    if not progress:
        say(loss_table(train_log.losses))

    # 5. write (main process only)
    trained = _unwrap(model)
    run = {
        **summary,
        "model": str(model_path),
        "model_abspath": str(model_dir.resolve()) if model_dir.exists() else None,
        "model_type": model_type,
        "parameters": n_params,
        "trainable_parameters": trainable,
        "bench": str(bench_path) if bench_path is not None else None,
        "image": image_name,
        "seed": cfg.seed,
        "losses": train_log.losses,
        "train_seconds": train_log.seconds,
        "saved": "adapter" if adapter_only else ("merged LoRA model" if cfg.lora else "model"),
        "processes": world,
        "versions": versions(),
    }
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if main:
        run["wall_seconds"] = time.perf_counter() - start

        def write(tmp: Path) -> None:
            if cfg.lora and not adapter_only:
                merged = trained.merge_and_unload()  # type: ignore[operator]
                merged.save_pretrained(tmp, safe_serialization=True)
            else:
                trained.save_pretrained(tmp, safe_serialization=True)
            vlm.processor.save_pretrained(tmp)
            (tmp / RUN_FILE).write_text(
                json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )

        write_atomically(out, write)
        say(f"saved {run['saved']} to {out} ({run['wall_seconds']:.1f} s)")
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return run


def _parts_of(method: str) -> tuple[str, ...]:
    return {"siu": ("ce", "dmk"), "po": ("ce",), "ga": ("ce",), "ga_kl": ("ce", "kl")}[method]


def _config_record(cfg: UnlearnConfig) -> dict[str, Any]:
    data = asdict(cfg)
    data["targets"] = list(cfg.targets)
    data["counts"] = list(cfg.counts) if cfg.counts is not None else None
    return data
