"""What each method's step costs: step time and peak memory relative to plain cross-entropy fine-tuning.

    python benchmarks/unlearn_step_cost.py [--steps 12] [--micro] [--methods siu,npo]

One run, on the synthetic world's tiny LLaVA and one concept, with the tiny profile (LoRA, batches of
32). Every registered method trains on its own data (SIU's four targets, the baselines' forget
questions, the forget + retain sets of GradDiff / NPO / SimNPO / IdkDPO) and is compared with plain
cross-entropy fine-tuning on the *same* data ("ce"), through the project's one training loop. For
SIU there are also the set-ups that the cached reference replaces:

  siu adapter-off  LoRA, p_ref = the same model with adapters disabled, every step
  siu+copy         LoRA, p_ref from a naive second copy of the model
  siu full         full fine-tuning of the language model, p_ref precomputed once (vs "ce full")
  siu full+copy    full fine-tuning, p_ref from a second copy

Step time is the median over the steps after the first, and the best of ``--repeats`` rounds that
cycle through the set-ups (a round-robin, so a busy moment of the machine does not land on one
set-up only), measured without the profiler; the one-off precomputation of the cached reference is
printed beside it. Memory comes from a separate profiled round of 2 steps per set-up (the second
step has the optimiser state). Peak memory is the model's weights (plus the copy where there is one)
plus the peak of the tensors allocated during the steps (activations, gradients, optimiser state,
cached reference logits), read from the PyTorch profiler's memory events.
Goals (the methods issue): a method with a reference <= 1.25x CE's step time and <= 1.15x its memory,
and none holds a second copy of the model.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from siu.bench.load import load_benchmark
from siu.memory import peak_of
from siu.models.adapter import VLM
from siu.tables import format_table
from siu.training import TrainConfig, train
from siu.unlearn.batches import batch_schedule, groups_of, local_batches, model_inputs
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.losses import cross_entropy, vocab_mask_for_names
from siu.unlearn.methods import LossInputs, Method, Part, get_method, method_names
from siu.unlearn.preparation import make_loss_fn, prepare_trainable, sample_meta
from siu.unlearn.reference import Reference
from siu.unlearn.run import build_data
from siu.world.cache import ensure_world_and_model


class CopyReference:
    """The naive way: a frozen second copy of the original model gives p_ref."""

    def __init__(self, original: torch.nn.Module) -> None:
        self.copy = copy.deepcopy(original).eval().requires_grad_(False)

    @torch.no_grad()
    def logits(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], like: torch.Tensor
    ) -> torch.Tensor:
        return self.copy(**model_inputs(batch)).logits


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


class PlainCe(Method):
    """Plain fine-tuning: cross-entropy on every answer token of the method's data (the baseline)."""

    name = "ce"
    summary = "cross-entropy"
    data = "siu"
    parts = {"ce": Part("all", "tokens")}  # noqa: RUF012

    def loss(self, x: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        ce = cross_entropy(x.logits, x.labels)
        return ce * x.scales["ce"], {"ce": float(ce.detach())}


def measure(name: str, model_dir: Any, world: Any, concept: str, steps: int, memory: bool) -> dict[str, Any]:
    """One set-up: ``<method>``, ``ce <method>`` (CE on that method's data), or a SIU variant (see above)."""
    lora = "full" not in name
    data_method = get_method(next(w for w in name.replace("+copy", "").split() if w in method_names()))
    cfg, _ = UnlearnConfig(method=data_method.name, profile="tiny", steps=steps, lora=lora).resolved(
        "llava", 0
    )
    method: Method = PlainCe() if name.startswith("ce") else data_method()
    vlm = VLM.load(model_dir)
    bench = load_benchmark(world)
    record = bench.concept(concept)
    image = bench.load_image(record, record.forget_image)
    samples = build_data(cfg, record, image, bench, None, vlm)  # the method's data, for it and its CE
    vocab = vlm.model.get_output_embeddings().weight.shape[0]
    vocab_mask = vocab_mask_for_names(vlm.tokenizer, record.names, vocab)
    torch.manual_seed(0)
    original = vlm.model
    # as the runner does: the hidden layer a method reads, adapters only up to it, then its prepare hook
    layer = method.feature_layer(original)
    model = prepare_trainable(original, cfg, upto=method.lora_upto(original))
    encoded = [vlm.encode_one(s.sample) for s in samples]
    metas = sample_meta(samples)
    schedule = batch_schedule(len(encoded), 32, steps, 0, groups_of(metas))
    batches = [b for (b,) in local_batches(vlm, encoded, metas, schedule, 0, 1, method)]
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
            reference = Reference("adapter_off", layer)
        elif method.reference:
            reference = Reference("cached", layer)
            t0 = time.perf_counter()
            with model.disable_adapter() if lora else contextlib.nullcontext():
                reference.precompute(model, batches)
            precompute = time.perf_counter() - t0
        method.prepare(model, [[b] for b in batches], 0)
        times: list[float] = []
        last = [time.perf_counter()]

        def on_step(_step: int, _record: dict[str, float]) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        train(
            model,
            iter(batches),
            make_loss_fn(method, reference, vocab_mask, layer),
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


def baseline_of(name: str) -> str:
    if name.startswith("ce"):
        return name
    method = name.split()[0].split("+")[0]
    return f"ce full {method}" if "full" in name else f"ce {method}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--world", type=Path, default=None, help="a synthetic world (with --model)")
    ap.add_argument("--model", type=Path, default=None, help="its pre-trained model, used as it is")
    ap.add_argument("--micro", action="store_true", help="the micro world's model (faster to build)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all set-ups; the best is kept")
    ap.add_argument("--methods", default=",".join(method_names()), help="comma list (default: every method)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.model is not None and args.world is not None:  # a model pre-trained earlier, as it is
        world, model_dir = args.world, args.model
    else:
        world, model_dir, _ = ensure_world_and_model(micro=args.micro)
    concept = load_benchmark(world).concepts[0].slug
    methods = [get_method(m).name for m in args.methods.split(",") if m.strip()]
    names = [n for m in methods for n in (f"ce {m}", m)]
    if "siu" in methods:
        names += ["siu adapter-off", "siu+copy", "ce full siu", "siu full", "siu full+copy"]
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
        base = results[baseline_of(n)]
        r = results[n]
        rows.append(
            [n, f"{r['step_s'] * 1000:.1f}", f"{r['step_s'] / base['step_s']:.2f}",
             f"{r['precompute_s'] * 1000:.0f}" if r["precompute_s"] else "",
             f"{r['peak'] / 2**20:.1f}", f"{r['peak'] / base['peak']:.2f}"]
        )  # fmt: skip
    print(f"tiny LLaVA ({sum(p.numel() for p in VLM.load(model_dir).model.parameters()):,} parameters), "
          f"concept {concept}, {args.steps} steps, {torch.get_num_threads()} threads")  # fmt: skip
    print(format_table(["set-up", "step ms", "time / CE", "once ms", "peak MiB", "peak / CE"], rows))
    print(
        "goals (methods with a reference): step time / CE <= 1.25, peak memory / CE <= 1.15; no second copy"
    )


if __name__ == "__main__":
    main()
