"""What the stopping rule costs: the time of its checks after a step, relative to the step itself.

    python benchmarks/stop_rule_cost.py [--steps 8] [--repeats 3] [--concept SLUG] [--world W --model M]

One process, the synthetic world's tiny LLaVA, SIU with its defaults. Each round trains the same
concept twice for ``--steps`` steps: with ``--stop never`` (no checks) and with ``--stop watch``
(every check after every step, never stopping, so both train the same steps). The time between two
steps' ends is one training step without the rule and one step plus one check with it; the check's
cost is the difference of the medians, and the best of ``--repeats`` rounds (run alternately, so a busy
moment of the machine does not land on one set-up only) is kept. The one-off build of the check
set (the original's answers to every check question, before the first step) is printed beside it.

What a check does is counted too, since it is what carries over to a real model: greedy answers to
the rule's naming questions on the check views and to one question per other concept on its own
picture, and three scoring passes (the name's first token on both, the retain text's answers).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from siu.bench.load import load_benchmark
from siu.models.adapter import VLM
from siu.tables import format_table
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import unlearn
from siu.world.cache import ensure_world_and_model


def timed_run(model: Path, world: Path, concept: str, steps: int, stop: str) -> dict[str, Any]:
    """One run; the seconds between consecutive steps' ends, and the run's record."""
    ends: list[float] = []

    def observe(_step: int, _vlm: VLM) -> None:  # called as each step ends, before its check
        ends.append(time.perf_counter())

    cfg = UnlearnConfig(method="siu", steps=steps, stop=stop, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = unlearn(model, concept, None, world, cfg, Path(tmp) / "out", progress=False,
                      log=lambda *_: None, observe=observe)  # fmt: skip
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {"gap": statistics.median(gaps), "first": ends[0] - start, "run": run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="steps per run (the rule never stops: watch)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of both set-ups; the best is kept")
    ap.add_argument("--concept", default=None, help="a concept's slug (default: the world's first)")
    ap.add_argument("--world", type=Path, default=None, help="a synthetic world (with --model)")
    ap.add_argument("--model", type=Path, default=None, help="its pre-trained model, used as it is")
    args = ap.parse_args()
    if args.steps < 3:
        ap.error("--steps must be at least 3 (the first step's time includes the set-up)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.model is not None and args.world is not None:
        world, model = args.world, args.model
    else:
        world, model, _ = ensure_world_and_model()
    concept = args.concept or load_benchmark(world).concepts[0].slug
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeats):
        for stop in ("never", "watch"):
            r = timed_run(model, world, concept, args.steps, stop)
            if stop not in best or r["gap"] < best[stop]["gap"]:
                best[stop] = r
    step, with_check = best["never"]["gap"], best["watch"]["gap"]
    check = with_check - step
    stopping = best["watch"]["run"]["stopping"]
    build = best["watch"]["first"] - best["never"]["first"]
    print(f"tiny LLaVA, SIU's defaults, concept {concept}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, best of {args.repeats} rounds")  # fmt: skip
    rows = [
        ["training step (--stop never)", f"{step * 1000:.0f}", "1.00"],
        ["training step + check (--stop watch)", f"{with_check * 1000:.0f}", f"{with_check / step:.2f}"],
        ["the check alone", f"{check * 1000:.0f}", f"{check / step:.2f}"],
        ["building the check set (once, before step 1)", f"{build * 1000:.0f}", f"{build / step:.2f}"],
    ]
    print(format_table(["", "ms", "x a training step"], rows))
    print(f"a check: {stopping['check_questions']} greedy answers on the check views, "
          f"{stopping['other_concepts_checked']} on the other concepts' pictures, 3 scoring passes")  # fmt: skip


if __name__ == "__main__":
    main()
