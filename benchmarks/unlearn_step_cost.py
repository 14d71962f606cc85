"""What SIU's reference costs: step time and peak memory of SIU vs plain cross-entropy fine-tuning.

    python benchmarks/unlearn_step_cost.py [--steps 12] [--micro]

One run, on the synthetic world's tiny LLaVA and the SIU data of one concept (the tiny profile's
34 samples, batches of 32). Seven set-ups through the project's one training loop:

  ce            LoRA, cross-entropy only (plain fine-tuning)
  siu           LoRA, SIU loss; p_ref precomputed once before step 1 (siu unlearn's default)
  siu adapter-off  LoRA, SIU loss; p_ref = the same model with adapters disabled, every step
  siu+copy      LoRA, SIU loss; p_ref from a naive second copy of the model
  ce full       full fine-tuning of the language model, cross-entropy only
  siu full      full fine-tuning, SIU loss; p_ref precomputed once at the supervised positions
  siu full+copy full fine-tuning, SIU loss; p_ref from a second copy

Step time is the median over the steps after the first, and the best of ``--repeats`` rounds that
cycle through the set-ups (a round-robin, so a busy moment of the machine does not land on one
set-up only), measured without the profiler; the one-off precomputation of the cached reference is
printed beside it. Memory comes from a separate profiled round of 2 steps per set-up (the second
step has the optimiser state). Peak memory is the model's weights (plus
the copy where there is one) plus the peak of the tensors allocated during the steps (activations,
gradients, optimiser state, cached reference logits), read from the PyTorch profiler's memory events.
Goals (the unlearning issue): SIU / CE step time <= 1.25, SIU / CE peak memory <= 1.15.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from siu.bench.load import load_benchmark
from siu.models.adapter import VLM
from siu.report.table import format_table
from siu.training import TrainConfig, train
from siu.unlearn.losses import vocab_mask_for_names
from siu.unlearn.run import (
    Reference,
    UnlearnConfig,
    _model_inputs,
    apply_lora,
    batch_schedule,
    build_data,
    local_batches,
    make_loss_fn,
    set_full_scope,
)
from siu.world.cli import ensure_world_and_model


class CopyReference:
    """The naive way: a frozen second copy of the original model gives p_ref."""

    def __init__(self, original: torch.nn.Module) -> None:
        self.copy = copy.deepcopy(original).eval().requires_grad_(False)

    @torch.no_grad()
    def logits(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], like: torch.Tensor
    ) -> torch.Tensor:
        return self.copy(**_model_inputs(batch)).logits


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def peak_of(prof: Any) -> int:
    """Highest running total of the bytes allocated (and freed, negative) by each profiled op.

    Each op's own allocations (``self_cpu_memory_usage``, children excluded, so nothing counts twice)
    are placed at its start; frees outside any op are ``[memory]`` events of their own.
    """
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    total = peak = 0
    for e in events:
        total += e.self_cpu_memory_usage
        peak = max(peak, total)
    return peak


def measure(name: str, model_dir: Any, world: Any, concept: str, steps: int, memory: bool) -> dict[str, Any]:
    lora, method = "full" not in name, ("siu" if "siu" in name else "po")
    cfg, _ = UnlearnConfig(method="siu", profile="tiny", steps=steps, lora=lora).resolved("llava", 0)
    vlm = VLM.load(model_dir)
    bench = load_benchmark(world)
    record = bench.concept(concept)
    image = bench.load_image(record, record.forget_image)
    samples = build_data(cfg, record, image, bench, None, vlm)  # the same SIU data for every set-up
    vocab = vlm.model.get_output_embeddings().weight.shape[0]
    vocab_mask = vocab_mask_for_names(vlm.tokenizer, record.names, vocab)
    torch.manual_seed(0)
    original = vlm.model
    model = apply_lora(original, cfg) if lora else original
    if not lora:
        set_full_scope(model, "language_model")
    encoded = [vlm.encode_one(s.sample) for s in samples]
    batches = local_batches(vlm, encoded, batch_schedule(len(encoded), 32, steps, 0), 0, 1)
    static = tensor_bytes(model)
    reference: Any = None
    precompute = 0.0
    # the profiler slows every op down, so times come from rounds without it
    with (
        profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        if memory
        else contextlib.nullcontext()
    ) as prof:
        if "copy" in name:
            reference = CopyReference(original if not lora else model.get_base_model())
            static += tensor_bytes(reference.copy)
        elif "adapter-off" in name:
            reference = Reference("lora")
        elif method == "siu":
            reference = Reference("cached")
            t0 = time.perf_counter()
            with model.disable_adapter() if lora else contextlib.nullcontext():
                reference.precompute(model, batches)
            precompute = time.perf_counter() - t0
        loss_cfg = cfg if method == "siu" else UnlearnConfig(method="po")
        times: list[float] = []
        last = [time.perf_counter()]

        def on_step(_step: int, _record: dict[str, float]) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        train(
            model,
            iter(batches),
            make_loss_fn(loss_cfg, reference, vocab_mask),
            TrainConfig(steps=steps, lr=cfg.lr or 1e-3),
            progress=False,
            on_step=on_step,
        )
    if "copy" in name:
        static -= tensor_bytes(reference.copy)  # counted inside the profile already (deepcopy)
    return {
        "name": name,
        "step_s": statistics.median(times[1:]),
        "precompute_s": precompute,
        "peak": static + peak_of(prof) if memory else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--micro", action="store_true", help="the micro world's model (faster to build)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all set-ups; the best is kept")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    world, model_dir, _ = ensure_world_and_model(micro=args.micro)
    concept = load_benchmark(world).concepts[0].slug
    names = ["ce", "siu", "siu adapter-off", "siu+copy", "ce full", "siu full", "siu full+copy"]
    results = {n: measure(n, model_dir, world, concept, 2, memory=True) for n in names}
    for _ in range(args.repeats):  # round-robin timing rounds without the profiler
        for n in names:
            r = measure(n, model_dir, world, concept, args.steps, memory=False)
            if "best" not in results[n] or r["step_s"] < results[n]["best"]:
                results[n]["best"], results[n]["precompute_s"] = r["step_s"], r["precompute_s"]
    for r in results.values():
        r["step_s"] = r["best"]
    rows = []
    for n in names:
        base = results["ce full" if "full" in n else "ce"]
        r = results[n]
        rows.append(
            [n, f"{r['step_s'] * 1000:.1f}", f"{r['step_s'] / base['step_s']:.2f}",
             f"{r['precompute_s'] * 1000:.0f}" if r["precompute_s"] else "",
             f"{r['peak'] / 2**20:.1f}", f"{r['peak'] / base['peak']:.2f}"]
        )  # fmt: skip
    print(f"tiny LLaVA ({sum(p.numel() for p in VLM.load(model_dir).model.parameters()):,} parameters), "
          f"concept {concept}, {args.steps} steps, {torch.get_num_threads()} threads")  # fmt: skip
    print(format_table(["set-up", "step ms", "time / CE", "once ms", "peak MiB", "peak / CE"], rows))
    print("goals: siu / ce step time <= 1.25; siu / ce peak memory <= 1.15")


if __name__ == "__main__":
    main()
