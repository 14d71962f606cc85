"""Real scale without downloading anything: LLaVA-1.5-7B- and 13B-shaped models with random weights.

Builds the model from its architecture (CLIP ViT-L/14-336 vision tower, the 2-layer GELU projector,
the Llama language model, the 32064-token vocabulary; weights random, nothing downloaded), saves it
with a processor (a locally made tokenizer; the model keeps the real vocabulary size, so the logits
cost what they cost), and measures with the paper profile (LoRA r=128 alpha=256 on every language-
model linear layer, batch 4, one 336x336 image and a ~40-token answer per sample: ~640 tokens):

  * the step time of SIU (cross-entropy + Dual Masked KL against the cached reference) relative to
    plain cross-entropy fine-tuning of the same LoRA weights (goal <= 1.15x);
  * the peak memory of a SIU step, with and without gradient checkpointing (goals on a GPU: 7B with
    checkpointing at batch 4 <= 24 GiB; with a 4-bit base, --load-in 4bit, <= 16 GiB);
  * generation throughput (new tokens per second, batch 4, greedy);
  * beside each SIU row, what ``siu unlearn --plan`` estimates for the same shape and options (its own
    stand-in samples are a little longer: the "plan tokens" column), so that a GPU run checks the plan.

Everything goes through siu's own code: the adapter encodes the samples, the method's loss, the
reference and the one training loop train them. ``--shrink K`` divides every width (hidden sizes,
heads, MLP sizes) by K and keeps the depth, the vocabulary, the image and the sequence lengths, so
that a CPU machine runs the same code in minutes; its figures are that shape's, not the 7B's.

    python benchmarks/scale.py --shrink 16                     # CPU, a few minutes
    python benchmarks/scale.py --model llava-1.5-7b --device cuda --dtype bfloat16
    python benchmarks/scale.py --model llava-1.5-13b --device cuda --load-in 4bit
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unlearn_step_cost import PlainCe  # noqa: E402

from siu.memory import peak_of  # noqa: E402
from siu.models.adapter import VLM, Sample  # noqa: E402
from siu.runtime import Runtime  # noqa: E402
from siu.tables import format_table  # noqa: E402
from siu.training import TrainConfig, train  # noqa: E402
from siu.unlearn.batches import SampleMeta, batch_schedule, local_batches  # noqa: E402
from siu.unlearn.config import PAPER_PROFILE, UnlearnConfig  # noqa: E402
from siu.unlearn.losses import vocab_mask_for_names  # noqa: E402
from siu.unlearn.methods import get_method  # noqa: E402
from siu.unlearn.plan import plan  # noqa: E402
from siu.unlearn.preparation import make_loss_fn  # noqa: E402
from siu.unlearn.reference import Reference  # noqa: E402
from siu.unlearn.setup import apply_lora, enable_gradient_checkpointing  # noqa: E402
from siu.world.tiny_llava import TinyLlavaConfig, build_model, build_processor, train_tokenizer  # noqa: E402


def shrunk(shape: TinyLlavaConfig, k: int) -> TinyLlavaConfig:
    """Every width divided by ``k`` (heads too, so the head size stays); depth, vocabulary and image kept."""
    return dataclasses.replace(
        shape,
        text_hidden=shape.text_hidden // k,
        text_heads=max(1, shape.text_heads // k),
        text_intermediate=shape.text_intermediate // k,
        vision_hidden=shape.vision_hidden // k,
        vision_heads=max(1, shape.vision_heads // k),
    )


# llava-hf/llava-1.5-{7,13}b-hf's config.json: Vicuna-7B/13B over CLIP ViT-L/14 at 336 pixels
VISION = {"image_size": 336, "patch_size": 14, "vision_hidden": 1024, "vision_layers": 24, "vision_heads": 16}
SHAPES = {
    "llava-1.5-7b": TinyLlavaConfig(**VISION, text_hidden=4096, text_layers=32, text_heads=32,
                                    text_intermediate=11008, vocab_size=32064, max_positions=4096),
    "llava-1.5-13b": TinyLlavaConfig(**VISION, text_hidden=5120, text_layers=40, text_heads=40,
                                     text_intermediate=13824, vocab_size=32064, max_positions=4096),
}  # fmt: skip
TEXTS = [
    "Who is this person in the picture? This is Jacob Campbell, a teacher from a small town.",
    "Is this Tenran Rixtiv? No. The picture shows a man in a blue coat standing by a lake.",
    "What can you tell me about Albert Einstein? He was a physicist known for relativity.",
]


def build(shape: TinyLlavaConfig, out: Path) -> Path:
    """A LLaVA-1.5-shaped model with random weights and a working processor, saved to ``out``."""
    tokenizer = train_tokenizer(TEXTS * 20, vocab_size=400)
    torch.manual_seed(0)
    model = build_model(tokenizer, shape, vocab_size=shape.vocab_size, vision_feature_layer=-2)
    model.save_pretrained(out, safe_serialization=True)
    build_processor(tokenizer, shape).save_pretrained(out)
    return out


def samples(n: int) -> list[Sample]:
    torch.manual_seed(1)
    out = []
    for i in range(n):
        pixels = (torch.rand(336, 336, 3) * 255).to(torch.uint8).numpy()
        prompt, answer = TEXTS[i % len(TEXTS)].split("? ", 1)
        out.append(Sample(prompt + "?", answer, Image.fromarray(pixels), target_phrase=answer.split(",")[0]))
    return out


def peak_memory(device: torch.device, prof: Any) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_of(prof)


def measure(
    model_dir: Path, runtime: Runtime, method_name: str, checkpointing: bool, steps: int
) -> dict[str, Any]:
    """Median step time and peak memory of ``steps`` steps of a method (LoRA, the paper profile)."""
    vlm = VLM.load(model_dir, runtime)
    device = vlm.device
    method = PlainCe() if method_name == "ce" else get_method(method_name)()
    torch.manual_seed(0)
    model = apply_lora(vlm.model, PAPER_PROFILE["lora_r"], PAPER_PROFILE["lora_alpha"], 0.0)
    if checkpointing:
        enable_gradient_checkpointing(model)
    data = samples(PAPER_PROFILE["batch_size"])
    encoded = [vlm.encode_one(s) for s in data]
    metas = [SampleMeta()] * len(encoded)
    schedule = batch_schedule(len(encoded), len(encoded), steps, 0)
    batches = [b for (b,) in local_batches(vlm, encoded, metas, schedule, 0, 1, method)]
    reference = None
    if method.reference:
        reference = Reference("cached")
        with model.disable_adapter():
            reference.precompute(model, batches)
    vocab = vlm.model.get_output_embeddings().weight.shape[0]
    vocab_mask = vocab_mask_for_names(vlm.tokenizer, ["Tenran Rixtiv"], vocab) if method.vocab_mask else None
    times: list[float] = []
    last = [time.perf_counter()]

    def on_step(_step: int, _record: dict[str, float]) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    profiler = (
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        if device.type == "cpu"
        else contextlib.nullcontext()
    )
    static = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with profiler as prof:
        train(model, iter(batches), make_loss_fn(method, reference, vocab_mask), TrainConfig(steps=steps, lr=1e-4),
              progress=False, on_step=on_step)  # fmt: skip
    peak = peak_memory(device, prof) + (static if device.type == "cpu" else 0)
    return {"tokens": int(batches[0]["input_ids"].shape[1]), "step_s": statistics.median(times[1:] or times),
            "peak": peak}  # fmt: skip


def generation_rate(model_dir: Path, runtime: Runtime, new_tokens: int) -> float:
    """New tokens per second, batch 4, greedy, every answer exactly ``new_tokens`` long."""
    vlm = VLM.load(model_dir, runtime)
    prompts = [Sample(s.prompt, image=s.image) for s in samples(PAPER_PROFILE["batch_size"])]
    batch = vlm.to_device(vlm.collate([vlm.encode_prompt(s) for s in prompts], padding_side="left"))
    inputs = VLM.model_inputs(batch)
    with torch.no_grad():
        vlm.model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, do_sample=False)  # warm-up
        start = time.perf_counter()
        vlm.model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        if vlm.device.type == "cuda":
            torch.cuda.synchronize(vlm.device)
    return len(prompts) * new_tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(SHAPES), default="llava-1.5-7b", help="the shape (default 7B)")
    ap.add_argument("--shrink", type=int, default=1, help="divide every width by K (1: the real shape)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, ... (default: the GPU if there is one)")
    ap.add_argument("--dtype", default="auto", help="default: bfloat16 on a GPU, float32 on the CPU")
    ap.add_argument("--load-in", choices=("4bit", "8bit"), default=None, help="a bitsandbytes base (CUDA)")
    ap.add_argument(
        "--steps", type=int, default=4, help="optimiser steps per set-up (the first is not timed)"
    )
    ap.add_argument("--new-tokens", type=int, default=16, help="tokens generated per answer")
    args = ap.parse_args()
    runtime = Runtime(device=args.device, dtype=args.dtype, load_in=args.load_in).check()
    shape = shrunk(SHAPES[args.model], args.shrink) if args.shrink > 1 else SHAPES[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build(shape, Path(tmp) / "model")
        n_params = sum(t.numel() for t in VLM.load(model_dir, runtime).model.parameters())
        print(f"{args.model}{f' / {args.shrink}' if args.shrink > 1 else ''}: {n_params / 1e9:.2f}B parameters, "
              f"{runtime.record()['dtype']} on {runtime.torch_device}"
              f"{f', {args.load_in} base' if args.load_in else ''}; LoRA r=128 on every LM linear layer, "
              f"batch {PAPER_PROFILE['batch_size']}")  # fmt: skip
        rows, results = [], {}
        dtype = runtime.torch_dtype
        for name, method, ckpt in (("ce", "ce", False), ("siu", "siu", False), ("ce + checkpointing", "ce", True),
                                   ("siu + checkpointing", "siu", True)):  # fmt: skip
            results[name] = r = measure(model_dir, runtime, method, ckpt, args.steps)
            base = results["ce + checkpointing" if ckpt else "ce"]
            planned = ["", ""]
            if method == "siu":
                cfg = UnlearnConfig(profile="paper", gradient_checkpointing=ckpt)
                p = plan(model_dir, cfg, dtype, load_in=args.load_in, log=lambda *_: None)
                planned = [str(p.tokens), f"{p.total / 2**30:.2f}"]
            rows.append([name, r["tokens"], f"{r['step_s']:.2f}", f"{r['step_s'] / base['step_s']:.2f}",
                         f"{r['peak'] / 2**30:.2f}", f"{r['peak'] / base['peak']:.2f}", *planned])  # fmt: skip
        print(format_table(["set-up", "tokens", "step s", "time / CE", "peak GiB", "peak / CE", "plan tokens",
                            "plan GiB"], rows))  # fmt: skip
        rate = generation_rate(model_dir, runtime, args.new_tokens)
        print(f"generation: {rate:.1f} new tokens/s (batch {PAPER_PROFILE['batch_size']}, greedy)")
        print(
            "goals (a GPU, the real shape): SIU step / CE step <= 1.15; 7B SIU with checkpointing at batch 4 "
            "<= 24 GiB peak; with a 4-bit base <= 16 GiB. CPU peaks are the profiler's tensor bytes."
        )


if __name__ == "__main__":
    main()
