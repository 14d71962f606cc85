"""Evaluation speed: batched generation vs one prompt at a time, and one full ``siu eval``.

    python benchmarks/eval_throughput.py [--micro] [--prompts 96]

Both measured in one run on the synthetic world's tiny LLaVA: the same recognition prompts on
held-out images answered greedily (32 new tokens) in batches of 32 and one by one; then the wall
time of a complete evaluation of one concept (every metric, rubric judge) of the model against
itself. Goals (the evaluation issue): batched / one-at-a-time throughput >= 5x; full eval <= 90 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from siu.bench.load import load_benchmark
from siu.eval.run import evaluate
from siu.models.adapter import VLM, quiet_transformers
from siu.report.html import eval_report
from siu.tables import format_table
from siu.world.cache import ensure_world_and_model
from siu.world.gates import build_probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--micro", action="store_true", help="the micro world's model")
    ap.add_argument("--prompts", type=int, default=96, help="prompts answered each way (96)")
    args = ap.parse_args()
    quiet_transformers()
    world, model, _ = ensure_world_and_model(micro=args.micro)
    bench = load_benchmark(world)
    vlm = VLM.load(model)
    probes = build_probes(bench, recognition_per_concept=8, kinds=("recognition",))[: args.prompts]
    samples = [p.sample for p in probes]
    vlm.generate(samples[:4], max_new_tokens=32)  # warm-up
    t0 = time.perf_counter()
    batched = vlm.generate(samples, max_new_tokens=32, batch_size=32)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [vlm.generate([s], max_new_tokens=32, batch_size=1)[0] for s in samples]
    t_single = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    concept = bench.concepts[0]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        evaluate(model, model, world, concept.slug, Path(tmp) / "ev", judge="rubric", render=eval_report, log=lambda *_: None)
        t_eval = time.perf_counter() - t0
    n = len(samples)
    print(f"tiny LLaVA, {n} prompts, {torch.get_num_threads()} threads")
    rows = [
        ["one prompt at a time", f"{t_single:.1f}", f"{n / t_single:.1f}", "1.00"],
        ["batched (32)", f"{t_batched:.1f}", f"{n / t_batched:.1f}", f"{t_single / t_batched:.2f}"],
    ]
    print(format_table(["generation", "seconds", "answers/s", "speed-up"], rows))
    print(f"identical answers both ways: {same}/{n}")
    print(f"full siu eval of {concept.name!r} (every metric, rubric judge): {t_eval:.1f} s (goal <= 90 s)")
    print("goal: batched / one-at-a-time >= 5x")


if __name__ == "__main__":
    main()
