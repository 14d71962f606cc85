"""Joint unlearning on a synthetic world: forget sets of growing size, each forgotten in one run.

For each size K: the first K concepts taken round-robin across categories (so that a set of 8 spans
every category), forgotten jointly with the method's defaults (``siu unlearn --concept A,B,...``,
one forget image each), then measured on held-out images:
  forget    each forgotten concept's recognition                 (goal <= 0.05 for every one)
  others    the concepts not forgotten, recognition / original's  (goal >= 0.90)
  facts     each forgotten concept's text facts                  (goal >= 0.90 for every one)
  vqa       generic visual questions (the world's specificity set), relative to the original's
            (the one specificity left when every concept is forgotten)

    python scripts/joint_acceptance.py                           # sizes 1,2,4,8,all on world 0
    python scripts/joint_acceptance.py --sizes 8 --steps 20 --json joint.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from siu.bench.load import load_benchmark
from siu.eval.forgetting import concept_scores, recognition_probes
from siu.forget_sets import across_categories
from siu.models.adapter import VLM
from siu.tables import format_table
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import unlearn
from siu.world.cache import default_home, ensure_world_and_model
from siu.world.gates import build_probes

FORGET_MAX, OTHERS_MIN, FACTS_MIN = 0.05, 0.90, 0.90  # the joint goals of the many-concepts issue


def trace_table(trace: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    """Per step: held-out recognition of the forgotten concepts (how many are gone, the highest), the
    others relative to the original, and what the stopping rule's check saw at that step."""
    by_step = {c["step"]: c for c in checks}
    rows = []
    for t in trace:
        forget = t["forget"].values()
        check = by_step.get(t["step"], {})
        rows.append([t["step"], f"{sum(v <= FORGET_MAX for v in forget)}/{len(forget)}", f"{max(forget):.3f}",
                     f"{t['others']:.3f}", "yes" if check.get("forgotten") else "no" if check else "-",
                     check.get("stop") or ""])  # fmt: skip
    head = [
        "step",
        "forgotten (held-out)",
        "highest",
        "others",
        "rule: forgotten on check views",
        "rule stops",
    ]
    return format_table(head, rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,2,4,8,all", help="forget-set sizes (comma list; 'all')")
    ap.add_argument("--method", default="siu")
    ap.add_argument("--steps", type=int, default=20, help="step cap (default 20, the issue's budget)")
    ap.add_argument("--stop", choices=("auto", "watch", "never"), default=None, help="default: the method's")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=None, help="this pre-trained model of the world")
    ap.add_argument("--world", type=Path, default=None, help="with --model: its world directory")
    ap.add_argument("--images", type=int, default=8, help="held-out recognition questions per concept")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--trace",
        action="store_true",
        help="after every step, the held-out figures beside the stopping rule's check (why a run goes on)",
    )
    args = ap.parse_args(argv)
    if args.model is not None:
        world = args.world or default_home() / "worlds" / f"default-seed{args.world_seed}"
        model = args.model
    else:
        world, model, _ = ensure_world_and_model(seed=args.world_seed)
    bench = load_benchmark(world)
    order = across_categories(list(bench.concepts))
    sizes = [len(order) if s.strip() == "all" else int(s) for s in args.sizes.split(",")]
    probes = recognition_probes(bench, args.images)
    vqa = build_probes(bench, kinds=("specificity_vqa",))

    def vqa_share(vlm: VLM) -> float:
        _, records = concept_scores(vlm, vqa)
        return sum(r["correct"] for r in records) / len(records)

    original = VLM.load(model)
    before, _ = concept_scores(original, probes)
    vqa_before = vqa_share(original)
    rows, runs = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in sizes:
            gone = order[:k]
            out = Path(tmp) / f"joint-{k}"
            cfg = UnlearnConfig(method=args.method, steps=args.steps, stop=args.stop)
            trace: list[dict[str, Any]] = []

            def observe(step: int, vlm: VLM, gone: list[str] = gone, trace: list = trace) -> None:
                now, _ = concept_scores(vlm, probes)
                kept = [s for s in before if s not in gone]
                trace.append({"step": step, "forget": {s: now[s]["recognition"] for s in gone},
                              "others": sum(now[s]["recognition"] for s in kept)
                              / sum(before[s]["recognition"] for s in kept) if kept else float("nan")})  # fmt: skip

            run = unlearn(model, gone if k > 1 else gone[0], None, world, cfg, out, progress=False,
                          log=lambda *_: None, observe=observe if args.trace else None)  # fmt: skip
            if args.trace:
                print(trace_table(trace, (run["stopping"] or {}).get("checks", [])), file=sys.stderr)
            unlearned = VLM.load(out)
            after, _ = concept_scores(unlearned, probes)
            vqa_relative = vqa_share(unlearned) / vqa_before
            kept = [s for s in before if s not in gone]
            forget = {s: after[s]["recognition"] for s in gone}
            facts = {s: after[s].get("facts", float("nan")) for s in gone}
            others = (
                sum(after[s]["recognition"] for s in kept) / sum(before[s]["recognition"] for s in kept)
                if kept
                else float("nan")
            )
            met = [s for s in gone if forget[s] <= FORGET_MAX and facts[s] >= FACTS_MIN]
            passed = len(met) == len(gone) and (not kept or others >= OTHERS_MIN)
            runs.append({"size": k, "concepts": gone, "steps_taken": run["steps_taken"],
                         "stop_reason": run["stopping"]["reason"] if run["stopping"] else None,
                         "batch_size": run["config"]["batch_size"], "forget": forget, "facts": facts,
                         "others_relative": others, "vqa_relative": vqa_relative,
                         "passed": passed, "trace": trace})  # fmt: skip
            rows.append([k, run["steps_taken"], run["config"]["batch_size"],
                         f"{sum(forget.values()) / k:.3f}", f"{max(forget.values()):.3f}",
                         f"{min(facts.values()):.3f}", f"{others:.3f}" if kept else "-", f"{vqa_relative:.3f}",
                         f"{len(met)}/{k}", "yes" if passed else "no"])  # fmt: skip
            print(f"[{k} concepts] steps {run['steps_taken']}, forget mean {sum(forget.values()) / k:.3f} "
                  f"max {max(forget.values()):.3f}, others {others:.3f}, vqa {vqa_relative:.3f}, "
                  f"facts min {min(facts.values()):.3f} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    print(
        f"default world (seed {args.world_seed}), {args.method} jointly, step cap {args.steps}; goals: every "
        f"forgotten concept <= {FORGET_MAX} recognised and >= {FACTS_MIN} facts, the others >= {OTHERS_MIN} "
        "of the original's recognition"
    )
    print(format_table(["forgotten", "steps taken", "batch", "forget mean", "forget max", "facts min",
                        "others", "vqa", "concepts meeting both", "goal met"], rows))  # fmt: skip
    if args.json is not None:
        args.json.write_text(
            json.dumps({"before": before, "vqa_before": vqa_before, "runs": runs}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
