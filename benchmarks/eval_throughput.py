"""Evaluation speed: batched generation, a bench cell with the original's side cached, one ``siu eval``.

    python benchmarks/eval_throughput.py [--micro] [--prompts 96]

Measured in one run on the synthetic world's tiny LLaVA:
1. the same recognition prompts on held-out images answered greedily (32 new tokens) in batches of
   32 and one at a time (goal: batched >= 5x);
2. a ``siu bench run`` cell's evaluation (a model unlearned with SIU's defaults, every metric, rubric
   judge) with the original model's side recomputed, as every cell did before, and taken from the
   per-concept cache that ``siu bench run`` now keeps (goal: >= 1.4x faster);
3. one complete ``siu eval`` of a concept, the original's side included (goal: <= 60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from siu.bench.load import load_benchmark
from siu.eval.run import evaluate
from siu.models.adapter import VLM
from siu.outputs import quiet_transformers
from siu.report.html import eval_report
from siu.tables import format_table
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import unlearn
from siu.world.cache import ensure_world_and_model
from siu.world.gates import build_probes


def _timed(fn: object, *args: object, **kwargs: object) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)  # type: ignore[operator]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=None, help="a synthetic world (with --model)")
    ap.add_argument("--model", type=Path, default=None, help="its pre-trained model, used as it is")
    ap.add_argument("--micro", action="store_true", help="the micro world's model")
    ap.add_argument("--prompts", type=int, default=96, help="prompts answered each way (96)")
    args = ap.parse_args()
    quiet_transformers()
    if args.model is not None and args.world is not None:  # a model pre-trained earlier, as it is
        world, model = args.world, args.model
    else:
        world, model, _ = ensure_world_and_model(micro=args.micro)
    bench = load_benchmark(world)
    vlm = VLM.load(model)
    probes = build_probes(bench, recognition_per_concept=8, kinds=("recognition",))[: args.prompts]
    samples = [p.sample for p in probes]
    vlm.generate(samples[:4], max_new_tokens=32)  # warm-up
    t_batched, batched = _timed(vlm.generate, samples, max_new_tokens=32, batch_size=32)
    t0 = time.perf_counter()
    single = [vlm.generate([s], max_new_tokens=32, batch_size=1)[0] for s in samples]
    t_single = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(batched, single, strict=True))  # type: ignore[arg-type]
    concept = bench.concepts[0]
    quiet = {"judge": "rubric", "render": eval_report, "log": lambda *_: None}
    with tempfile.TemporaryDirectory() as tmp:
        unlearned = Path(tmp) / "unlearned"
        unlearn(
            model, concept.slug, None, world, UnlearnConfig(), unlearned, progress=False, log=lambda *_: None
        )
        t_recomputed, _ = _timed(evaluate, unlearned, model, world, concept.slug, Path(tmp) / "a", **quiet)
        sides: dict[str, object] = {}
        t_first, _ = _timed(
            evaluate, unlearned, model, world, concept.slug, Path(tmp) / "b", sides=sides, **quiet
        )
        t_cached, _ = _timed(
            evaluate, unlearned, model, world, concept.slug, Path(tmp) / "c", sides=sides, **quiet
        )
        t_eval, _ = _timed(evaluate, model, model, world, concept.slug, Path(tmp) / "d", **quiet)
    n = len(samples)
    print(f"tiny LLaVA ({'micro' if args.micro else 'default'} world), {torch.get_num_threads()} threads")
    rows = [
        ["one prompt at a time", f"{t_single:.1f}", f"{n / t_single:.1f}", "1.00"],
        ["batched (32)", f"{t_batched:.1f}", f"{n / t_batched:.1f}", f"{t_single / t_batched:.2f}"],
    ]
    print(format_table(["generation", "seconds", "answers/s", "speed-up"], rows))
    print(f"identical answers both ways: {same}/{n} (goal: batched >= 5x)")
    rows = [
        ["original's side recomputed (every cell, before)", f"{t_recomputed:.1f}", "1.00"],
        [
            "first cell of a concept (computes the side once)",
            f"{t_first:.1f}",
            f"{t_recomputed / t_first:.2f}",
        ],
        ["later cells (side from the cache)", f"{t_cached:.1f}", f"{t_recomputed / t_cached:.2f}"],
    ]
    print(format_table([f"bench cell evaluation of {concept.name!r}", "seconds", "speed-up"], rows))
    print("goal: cached >= 1.4x faster")
    print(f"full siu eval of {concept.name!r} (every metric, rubric judge): {t_eval:.1f} s (goal <= 60 s)")


if __name__ == "__main__":
    main()
