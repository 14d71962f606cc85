"""``siu unlearn --plan``: the peak memory of an unlearning run, estimated without loading the weights.

A run's peak holds three things:

* **weights**: every parameter and buffer of the base model in its dtype (a bitsandbytes base: 4 or 8
  bits per linear weight, every other weight in float32 as QLoRA's preparation keeps it). Counted
  exactly from the architecture, built on PyTorch's ``meta`` device from ``config.json`` alone;
* **trainable state**: the trained weights' gradients and AdamW's two moments (and, for LoRA, the
  adapter weights themselves, float32), counted exactly from the same meta model;
* **activations**: what the forward pass keeps for the backward pass, the logits, the losses'
  temporaries, the cached reference. These depend on the code that runs (transformers' attention,
  peft's float32 copies of LoRA inputs, the method's loss), so they are *measured*: on two copies of
  the architecture with every width divided by K (MLP widths rounded; heads, depth, vocabulary, image
  and text lengths kept; random weights), running the very set-up and training steps of ``siu
  unlearn`` under the PyTorch profiler. With the depth and lengths fixed, every activation is
  either proportional to the width (hidden states, MLP inputs, LoRA inputs) or independent of it
  (logits, LoRA's rank-r products, attention statistics), so two widths determine the line, and the
  line gives the full width. ``tests/test_plan.py`` checks the estimate against measured peaks of whole models.

The data are stand-ins of the largest shape a run trains on: every sample holds the image (the
user's, capped as the run caps it, or a 1024x768 stand-in) and an answer of ``answer_tokens``
tokens, so the estimate is an upper bound for batches that mix in text-only samples.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from siu.errors import SiuError
from siu.memory import cpu_peak
from siu.models.adapter import VLM, Sample
from siu.unlearn.batches import SampleMeta
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.losses import vocab_mask_for_names
from siu.unlearn.methods import Method

GiB = 2**30
CARDS_GIB = (24, 40, 80)
# what a card needs besides the tensors: the CUDA context and the caching allocator's slack
CONTEXT_GIB = 1.0
ALLOCATOR_SLACK = 0.10
PROXY_WIDTHS = (64, 128)  # the language model widths of the two reduced copies (about)
MEASURED_STEPS = 2  # the first step allocates AdamW's moments; the second runs with them
ANSWER_TOKENS = 64  # SIU's longest answers (target 2) on LLaVA-1.5: about 40-90 tokens
STAND_IN_IMAGE = (1024, 768)
WIDTH_KEYS = ("hidden_size", "intermediate_size", "embed_dim", "projection_dim")
# MLP widths tie to no head or residual width, so a copy may round them: Idefics3's vision MLP (4304
# = 16 x 269) would otherwise hold its copies to 1/16 of the width, hours of bfloat16 on a CPU. Carried
# to the full width by the line, the rounding moves that layer's activations by at most about 3/4 of
# one unit of the narrower copy's MLP (1% at 67 wide; 0.4% for Idefics3: 67.25 -> 67, 134.5 -> 134).
ROUNDED_KEYS = ("intermediate_size",)
QUANT_BYTES = {"4bit": 4.127 / 8, "8bit": 1.0}  # NF4 + double-quantised absmax; int8 (+ row scales)


@dataclasses.dataclass
class Proxy:
    """One width-reduced copy: the divisor, its language-model width and what was measured."""

    k: int
    width: int
    dynamic: int  # bytes allocated at the peak of set-up + steps (above the weights)
    state: int  # of which the trainable state, counted
    tokens: int  # padded tokens per sample

    @property
    def activations(self) -> int:
        return self.dynamic - self.state


@dataclasses.dataclass
class MemoryPlan:
    model: str
    model_type: str
    parameters: int
    profile: str
    method: str
    dtype: str
    load_in: str | None
    trained: str  # "LoRA r=128" or "full fine-tuning (language_model)"
    trainable: int
    batch: int
    micro_batch: int
    checkpointing: bool
    tokens: int
    weights: int
    state: int
    activations: int
    proxies: list[Proxy]

    @property
    def total(self) -> int:
        return self.weights + self.state + self.activations

    def fits(self, card_gib: float) -> bool:
        return self.total * (1 + ALLOCATOR_SLACK) + CONTEXT_GIB * GiB <= card_gib * GiB

    def record(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["total"] = self.total
        out["fits"] = {f"{c} GB": self.fits(c) for c in CARDS_GIB}
        return out

    def report(self) -> str:
        def gib(n: int) -> str:
            return f"{n / GiB:8.2f} GiB"

        base = f"{self.load_in} base" if self.load_in else self.dtype
        widths = ", ".join(f"1/{p.k} ({p.width} wide)" for p in self.proxies)
        how = (
            "measured on the model's own shape with random weights"
            if [p.k for p in self.proxies] == [1]
            else f"measured on copies with widths {widths}, extrapolated"
        )
        lines = [
            f"plan for {self.model} ({self.model_type}, {_count(self.parameters)} parameters), "
            f"{self.method} with the {self.profile} profile",
            f"  {self.trained}, {self.trainable:,} weights trained; {base}; batch {self.batch}"
            + (f" in micro-batches of {self.micro_batch}" if self.micro_batch < self.batch else "")
            + f"; gradient checkpointing {'on' if self.checkpointing else 'off'}",
            f"  {self.tokens} tokens per sample (the image and a {ANSWER_TOKENS}-token answer)",
            "  estimated peak memory:",
            f"    weights          {gib(self.weights)}",
            f"    trainable state  {gib(self.state)}   (trained weights' gradients and AdamW moments"
            + (", LoRA weights in float32)" if "LoRA" in self.trained else ")"),
            f"    activations      {gib(self.activations)}   (the rest of the peak: what the forward pass keeps, "
            f"logits, the losses' temporaries; {how})",
            f"    total            {gib(self.total)}",
            "  fits (total + 10% allocator slack + 1 GiB CUDA context): "
            + ", ".join(f"{c} GB {'yes' if self.fits(c) else 'no'}" for c in CARDS_GIB),
        ]
        hints = []
        if not self.checkpointing:
            hints.append("--gradient-checkpointing")
        if self.micro_batch > 1:
            hints.append("--micro-batch-size 1")
        if self.load_in is None and "LoRA" in self.trained:
            hints.append("--load-in 4bit (CUDA, siu[quant])")
        if hints and not self.fits(CARDS_GIB[0]):
            lines.append(f"  less memory: {', '.join(hints)} (add them to --plan to see their effect)")
        if self.load_in:
            lines.append(
                f"  the {self.load_in} base is an estimate (bitsandbytes needs CUDA): its activations were "
                "measured with float32 norms and embeddings, as QLoRA's preparation leaves them"
            )
        return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


# ----------------------------------------------------------------------------- the architecture
def _sub_configs(config: Any) -> list[Any]:
    subs = [getattr(config, name, None) for name in ("text_config", "vision_config")]
    return [s for s in subs if s is not None] or [config]


def text_width(config: Any) -> int:
    text = getattr(config, "text_config", None) or config
    return int(text.hidden_size)


def _split(k: int, heads: int, kv_heads: int) -> int:
    """The share of ``k`` taken from the number of heads: the largest divisor of ``k`` that divides
    both head counts (fewer heads make a copy cheap to run; narrower heads do not)."""
    return max(d for d in range(1, k + 1) if k % d == 0 and heads % d == 0 and kv_heads % d == 0)


def shrink_config(config: Any, k: int) -> Any | None:
    """A copy of ``config`` with every width divided by ``k`` (depth, vocabulary and image geometry
    kept): fewer attention heads where the head counts allow, narrower heads for the rest; MLP widths
    rounded to the nearest whole number. None when ``k`` does not divide the other widths evenly."""
    if k == 1:
        return copy.deepcopy(config)
    new = copy.deepcopy(config)
    for sub in _sub_configs(new):
        head_key = "num_attention_heads" if getattr(sub, "num_attention_heads", None) else "num_heads"
        heads = getattr(sub, head_key, None)
        width = getattr(sub, "embed_dim", None) or getattr(sub, "hidden_size", None)
        if not heads or not width:
            return None
        kv = getattr(sub, "num_key_value_heads", None) or heads
        head_dim = getattr(sub, "head_dim", None) or width // heads
        k_heads = _split(k, heads, kv)
        k_dim = k // k_heads
        if head_dim % k_dim or head_dim // k_dim < 2 or (head_dim // k_dim) % 2:
            return None  # rotary embeddings rotate pairs of a head's dimensions
        for key in WIDTH_KEYS:
            value = getattr(sub, key, None)
            if key == "head_dim" or not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                continue
            if value % k and key not in ROUNDED_KEYS:
                return None
            setattr(sub, key, max(1, round(value / k)))
        setattr(sub, head_key, heads // k_heads)
        if getattr(sub, "num_key_value_heads", None):
            sub.num_key_value_heads = kv // k_heads
        if getattr(sub, "head_dim", None):
            sub.head_dim = head_dim // k_dim
        for attr in ("rope_parameters", "rope_scaling"):  # transformers 5 names, then 4 (an alias in 5)
            rope = getattr(sub, attr, None)
            if isinstance(rope, dict) and rope.get("mrope_section"):
                sections = list(rope["mrope_section"])
                if any(s % k_dim for s in sections):
                    return None
                setattr(sub, attr, {**rope, "mrope_section": [s // k_dim for s in sections]})
                break
    return new


def proxy_divisors(config: Any) -> list[int]:
    """The two divisors whose reduced widths are nearest :data:`PROXY_WIDTHS` (``[1]``: the model is
    already that small, so it is measured as it is)."""
    width = text_width(config)
    if width <= max(PROXY_WIDTHS):
        return [1]
    valid = [k for k in range(2, width // 8 + 1) if width % k == 0 and shrink_config(config, k) is not None]
    chosen: list[int] = []
    for target in sorted(PROXY_WIDTHS, reverse=True):
        left = [k for k in valid if k not in chosen]
        if left:
            chosen.append(min(left, key=lambda k: (abs(math.log(width / k / target)), k)))
    if len(chosen) < 2:
        raise SiuError(
            f"cannot make two width-reduced copies of this architecture (language model {width} wide); "
            "--plan needs them to measure activations"
        )
    return sorted(chosen, reverse=True)


def _model_class(config: Any) -> Any:
    from transformers import AutoModelForImageTextToText

    try:
        return AutoModelForImageTextToText._model_mapping[type(config)]
    except KeyError:
        raise SiuError(f"{config.model_type}: not an image-text model transformers knows") from None


def meta_model(config: Any, dtype: torch.dtype) -> torch.nn.Module:
    """The architecture with no memory behind it (every tensor on the meta device)."""
    with torch.device("meta"):
        return _model_class(config)._from_config(config, dtype=dtype)  # type: ignore[no-any-return]


def _head(model: torch.nn.Module) -> torch.nn.Module | None:
    get = getattr(model, "get_output_embeddings", None)
    return get() if get is not None else None


def weight_bytes(model: torch.nn.Module, load_in: str | None) -> int:
    """Bytes of the base model's weights and buffers as a run holds them."""
    if load_in is None:
        tensors = [*model.parameters(), *model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)
    head = _head(model)
    quantised: set[int] = set()
    total = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            quantised.add(id(module.weight))
            total += module.weight.numel() * QUANT_BYTES[load_in]
            if load_in == "8bit":
                total += module.weight.shape[0] * 4  # one float32 scale per row
    # every other weight is kept in float32 (peft's prepare_model_for_kbit_training)
    total += sum(p.numel() * 4 for p in model.parameters() if id(p) not in quantised)
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return int(total)


def state_bytes(trainable: Sequence[torch.nn.Parameter], lora: bool, itemsize: int | None = None) -> int:
    """The trained weights' gradients and AdamW's two moments (both in the weights' dtype), and for
    LoRA the adapter weights themselves (which are not part of the base's weights). ``itemsize``: the
    weights' bytes each, where their tensors do not say it (a meta model's LoRA weights)."""
    per = 4 if lora else 3
    return sum(p.numel() * (itemsize or p.element_size()) * per for p in trainable)


def trained_weights(model: torch.nn.Module, cfg: UnlearnConfig, method: Method) -> list[torch.nn.Parameter]:
    """The weights a run trains, found by the run's own set-up (on a meta model: no memory)."""
    from siu.unlearn.preparation import prepare_trainable

    peft = prepare_trainable(model, cfg, upto=method.lora_upto(model))
    return [p for p in peft.parameters() if p.requires_grad]


# ----------------------------------------------------------------------------- measuring
def stand_in_samples(
    vlm: VLM, concept: str, image: Image.Image, n: int, method: Method
) -> tuple[list[Sample], list[SampleMeta]]:
    """``n`` samples of the largest shape a run trains on (the image, an ``ANSWER_TOKENS`` answer)."""
    words = (
        f"No. The picture shows a person in a dark coat standing in front of a plain wall. But {concept} "
        "actually has short grey hair, round glasses and a wide smile, and usually wears a bright jacket. "
    )
    ids = vlm.tokenizer(words * 8, add_special_tokens=False)["input_ids"][:ANSWER_TOKENS]
    answer = vlm.tokenizer.decode(ids, skip_special_tokens=True).strip()
    prompt = f"Is this {concept}? Describe what you see."
    samples = [Sample(prompt, answer, image, target_phrase=answer.split(".")[0]) for _ in range(n)]
    if method.data == "preference":  # pairs of a chosen and a rejected answer
        metas = [SampleMeta(forget=True, pair=i // 2, chosen=i % 2 == 0) for i in range(n)]
    else:  # half forget, half retain: every method's parts see data
        metas = [SampleMeta(forget=i % 2 == 0) for i in range(n)]
    return samples, metas


def data_size(cfg: UnlearnConfig) -> int:
    """How many samples a run's data has at most (the targets' counts and, for SIU's data, the other
    concepts' pictures where the benchmark has them)."""
    counts = cfg.counts or (1, 1, 1, 1)
    others = (cfg.others_pictures or 0) if cfg.method_instance().data == "siu" else 0
    return max(1, sum(counts[t - 1] for t in cfg.targets) + others)


def _emulate_kbit(model: torch.nn.Module) -> None:
    """What a bitsandbytes base changes for activations, on an ordinary model: every weight but the
    quantised linear layers' in float32 (QLoRA's preparation), so that hidden states are float32;
    each quantised layer computes in the compute dtype and returns its input's dtype (as bitsandbytes'
    ``Linear4bit`` does); inputs that require grad."""
    head = _head(model)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    kept = {id(p) for m in linear for p in m.parameters(recurse=False)}
    for p in model.parameters():
        if id(p) not in kept and p.is_floating_point():
            p.data = p.data.float()

    def compute_dtype(mod: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        mod.input_dtype = args[0].dtype  # type: ignore[assignment]
        return (args[0].to(mod.weight.dtype), *args[1:])  # type: ignore[arg-type]

    for m in linear:
        m.register_forward_pre_hook(compute_dtype)
        m.register_forward_hook(lambda mod, _args, out: out.to(mod.input_dtype))
    model.enable_input_require_grads()  # type: ignore[operator]


def measure_run(
    vlm: VLM,
    cfg: UnlearnConfig,
    method: Method,
    samples: Sequence[Sample],
    metas: Sequence[SampleMeta],
    vocab_mask: torch.Tensor | None,
    steps: int = MEASURED_STEPS,
    data_size: int | None = None,
) -> tuple[int, int, int]:
    """``(weights, allocated at the peak above them, trainable state)`` in bytes of ``siu unlearn``'s
    set-up and ``steps`` training steps on the CPU (``cfg`` resolved). ``data_size``: the run's number of
    samples when ``samples`` are fewer (one batch, to save time): the cached reference of the others
    is added, as many bytes per sample as the measured ones take."""
    from siu.training import train
    from siu.unlearn.preparation import make_loss_fn, prepare_training, train_config

    model = vlm.model
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    found: list[int] = []

    def work() -> None:
        torch.manual_seed(cfg.seed)
        prepared = prepare_training(vlm, cfg, method, samples, metas)
        params = [p for p in prepared.model.parameters() if p.requires_grad]
        found.append(state_bytes(params, bool(cfg.lora)))
        rows = prepared.reference.rows.values() if prepared.reference is not None else []
        found.append(sum(t.numel() * t.element_size() for t in rows) // max(1, len(rows)))
        loss = make_loss_fn(method, prepared.reference, vocab_mask, prepared.layer)
        train(prepared.model, iter(prepared.steps), loss, train_config(cfg, steps), progress=False)

    _, dynamic = cpu_peak(work)
    state, per_sample = found
    dynamic += max(0, (data_size or len(samples)) - len(samples)) * per_sample
    return weights, dynamic, state


def measure_proxy(
    config: Any,
    processor: Any,
    k: int,
    cfg: UnlearnConfig,
    method: Method,
    concept: str,
    image: Image.Image,
    dtype: torch.dtype,
    load_in: str | None,
    max_image_side: int | None,
) -> Proxy:
    """Build the copy of width 1/``k`` with random weights and measure a run's set-up and steps on it."""
    shrunk = shrink_config(config, k)
    assert shrunk is not None
    torch.manual_seed(0)
    model = _model_class(shrunk)._from_config(shrunk, dtype=dtype)
    model.eval()
    if load_in is not None:
        _emulate_kbit(model)
    vlm = VLM(model, processor, max_image_side=max_image_side)
    samples, metas = stand_in_samples(vlm, concept, image, min(cfg.batch_size or 1, data_size(cfg)), method)
    vocab_mask = None
    if method.vocab_mask:
        vocab = model.get_output_embeddings().weight.shape[0]
        vocab_mask = vocab_mask_for_names(vlm.tokenizer, [concept], vocab)
    _, dynamic, state = measure_run(vlm, cfg, method, samples, metas, vocab_mask, data_size=data_size(cfg))
    tokens = len(vlm.encode_one(samples[0]).input_ids)
    return Proxy(k=k, width=text_width(shrunk), dynamic=dynamic, state=state, tokens=tokens)


def extrapolate(proxies: Sequence[Proxy], width: int) -> int:
    """The activations at ``width`` on the line through the proxies' (one proxy: its own figure)."""
    if len(proxies) == 1:
        return proxies[0].activations
    a, b = proxies[0], proxies[1]
    slope = (b.activations - a.activations) / (b.width - a.width)
    return int(round(a.activations + slope * (width - a.width)))


def plan(
    model_path: str | Path,
    cfg: UnlearnConfig,
    dtype: torch.dtype,
    concept: str = "the concept",
    image: Image.Image | None = None,
    load_in: str | None = None,
    max_image_side: int | None = None,
    log: Callable[..., Any] = print,
) -> MemoryPlan:
    """Estimate the peak memory of ``siu unlearn`` for the model at ``model_path`` (its config and
    processor are read, never its weights) with ``cfg`` on a device holding ``dtype`` tensors."""
    from transformers import AutoConfig, AutoProcessor

    spath = str(model_path)
    if Path(spath).exists() and not (Path(spath) / "config.json").is_file():
        raise SiuError(f"{spath}: no config.json (the plan needs the model's config and processor files)")
    try:
        config = AutoConfig.from_pretrained(spath)
        processor = AutoProcessor.from_pretrained(spath)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SiuError(f"{spath}: cannot read the model's config or processor: {first}") from err
    cfg.check()
    meta = meta_model(config, dtype)
    n_params = sum(p.numel() for p in meta.parameters())
    cfg, profile = cfg.resolved(str(config.model_type), n_params)
    method = cfg.method_instance()  # built once resolved: the profile may set the method's options
    assert cfg.batch_size is not None
    if load_in is not None and not cfg.lora:
        raise SiuError(f"a {load_in} base cannot be fine-tuned fully; train LoRA (--lora)")
    weights = weight_bytes(meta, load_in)
    trainable = trained_weights(meta, cfg, method)
    # LoRA weights stay float32 under a bfloat16 / float16 base (peft); full fine-tuning keeps the dtype
    state = state_bytes(trainable, bool(cfg.lora), itemsize=4 if cfg.lora else dtype.itemsize)
    head = _head(meta)
    widest = max(
        (m.weight.numel() for m in meta.modules() if isinstance(m, torch.nn.Linear) and m is not head),
        default=0,
    )
    del meta

    if image is None:
        image = Image.new("RGB", STAND_IN_IMAGE, (128, 128, 128))
    measure_dtype = torch.bfloat16 if dtype == torch.float16 else dtype  # same bytes; CPU-friendly
    micro = min(cfg.micro_batch_size or cfg.batch_size, cfg.batch_size)
    proxies = []
    for k in proxy_divisors(config):
        log(f"  measuring a copy at 1/{k} of the width ({text_width(config) // k} wide, random weights)...")
        copy_k = measure_proxy(config, processor, k, cfg, method, concept, image, measure_dtype, load_in,
                               max_image_side)  # fmt: skip
        proxies.append(copy_k)
    activations = extrapolate(proxies, text_width(config))
    if load_in is not None:  # each quantised weight is dequantised to the compute dtype as it is used
        activations += widest * dtype.itemsize
    return MemoryPlan(
        model=spath,
        model_type=str(config.model_type),
        parameters=n_params,
        profile=profile,
        method=method.name,
        dtype=str(dtype).removeprefix("torch."),
        load_in=load_in,
        trained=f"LoRA r={cfg.lora_r}" if cfg.lora else f"full fine-tuning ({cfg.full_scope})",
        trainable=sum(p.numel() for p in trainable),
        batch=cfg.batch_size,
        micro_batch=micro,
        checkpointing=bool(cfg.gradient_checkpointing),
        tokens=proxies[-1].tokens,
        weights=weights,
        state=state,
        activations=activations,
        proxies=proxies,
    )
