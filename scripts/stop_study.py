"""Study of the stopping rule (siu.unlearn.stopping): its checks and the held-out truth, step by step.

For each concept, unlearn with ``--stop watch`` up to a step cap and, after every step, measure both
what the rule sees (check views of the forget image, the retain data) and what the acceptance
measures on held-out images (forget recognition, the others' recognition relative to the original's,
the concept's facts). Rules can then be compared offline on the recorded trajectories. The held-out
figures are read by this study only, never by the rule; tune on the default world (seed 0) only.

    python scripts/stop_study.py --model ~/.cache/siu/models/default-seed0 --steps 20 --json study.json
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
from siu.eval.forgetting import concept_scores, forgetting_summary, others_fell, recognition_probes
from siu.models.adapter import VLM
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import unlearn
from siu.unlearn.stopping import CHECK_KINDS, StopRule, own_figures, own_questions
from siu.world.cache import default_home, ensure_world_and_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--world", type=Path, default=None, help="the world directory (default: the cached one)")
    ap.add_argument(
        "--model", type=Path, default=None, help="its pre-trained model (default: the cached one)"
    )
    ap.add_argument("--method", default="siu")
    ap.add_argument("--concepts", default="all")
    ap.add_argument("--steps", type=int, default=20, help="the step cap")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--schedule", default=None, help="cosine | constant (default: the profile's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument(
        "--kinds",
        default=",".join(CHECK_KINDS),
        help="check-view kinds to record beside the rule's own, per question (default: all)",
    )
    ap.add_argument("--check-views", type=int, default=12, help="views per kind recorded")
    ap.add_argument(
        "--check-prompts",
        type=int,
        default=4,
        help="the rule's naming questions asked per view and recorded (CHECK_PROMPTS' first N)",
    )
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.model is None:
        world, model, _ = ensure_world_and_model(seed=args.world_seed)
    else:
        world = args.world or default_home() / "worlds" / f"default-seed{args.world_seed}"
        model = args.model
    bench = load_benchmark(world)
    slugs = [c.slug for c in bench.concepts] if args.concepts == "all" else args.concepts.split(",")
    probes = recognition_probes(bench, args.images)
    original = VLM.load(model)
    before, _ = concept_scores(original, probes)
    kinds = [k for k in args.kinds.split(",") if k]
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    for k, slug in enumerate(slugs):
        mine = [p for p in probes if p.concept == slug or p.kind == "recognition"]
        truth: list[dict[str, Any]] = []
        concept = next(c for c in bench.concepts if c.slug == slug)
        image = bench.load_image(concept, concept.forget_image)
        variants = {
            kind: own_questions(
                StopRule(check_views=args.check_views, check_kind=kind, prompts=args.check_prompts),
                [concept],
                [image],
                bench,
                args.seed,
                original,
            )
            for kind in kinds
        }

        def observe(
            step: int,
            vlm: VLM,
            slug: str = slug,
            mine: list = mine,
            truth: list = truth,
            variants: dict = variants,
        ) -> None:
            after, records = concept_scores(vlm, mine)
            s = forgetting_summary(before, after, slug)
            held_out = [r["correct"] for r in records if r["concept"] == slug and r["kind"] == "recognition"]
            truth.append(
                {
                    "step": step,
                    **{key: s[key] for key in ("forget_recognition", "others_relative", "facts", "passed")},
                    "held_out_named": held_out,
                    "others_fell": others_fell(before, after, slug),
                    "kinds": {
                        kind: {
                            "views": named.views,
                            "prompts": [q.prompt for q in named.questions],
                            **own_figures(named, vlm, each=True),
                        }
                        for kind, named in variants.items()
                        if named.questions
                    },
                }
            )

        cfg = UnlearnConfig(
            method=args.method,
            steps=args.steps,
            lr=args.lr,
            schedule=args.schedule,
            seed=args.seed,
            stop="watch",
        )
        with tempfile.TemporaryDirectory() as tmp:
            run = unlearn(
                model,
                slug,
                None,
                world,
                cfg,
                Path(tmp) / "out",
                progress=False,
                log=lambda *_: None,
                observe=observe,
            )
        results.append(
            {"concept": slug, "checks": run["stopping"]["checks"], "truth": truth, "config": run["config"]}
        )
        args.json.write_text(json.dumps({"before": before, "runs": results}, indent=1) + "\n")
        first_pass = next((t["step"] for t in truth if t["passed"]), None)
        print(
            f"[{k + 1}/{len(slugs)}] {slug}: first passing step {first_pass} ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
