"""How far each asserted science figure is from its bound, over several instances of the micro model.

The tests assert figures of *one* pre-trained micro model, and which one depends on the machine (the
order of float reductions changes the weights). This script stands in for other machines with other
pre-training seeds: for each seed it pre-trains the micro world's model and its gold retain model,
computes every figure that a test asserts (``tests/instance_figures.py``, the same code the tests
run) and prints, per figure, min / median / max across instances next to the test's bound.

    python scripts/instance_spread.py --seeds 0-7                 # about 5 minutes a seed on 2 cores
    python scripts/instance_spread.py --seeds 0-3 --threads 1 &   # two halves side by side ...
    python scripts/instance_spread.py --seeds 4-7 --threads 1     # ... then --seeds 0-7 prints all

Each seed's figures are kept in ``--work`` (seed-S.json) and reused, so an interrupted run resumes and
halves run in parallel can be joined. Add a science test: put its figure and bound in
``tests/instance_figures.py`` and run this before you commit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import instance_figures as fig  # noqa: E402

from siu.cli import main as siu  # noqa: E402
from siu.tables import format_table  # noqa: E402
from siu.world.build import WorldConfig, build_world  # noqa: E402
from siu.world.cache import retain_model  # noqa: E402
from siu.world.pretrain import PretrainConfig, pretrain  # noqa: E402


def seed_list(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def instance(world: Path, work: Path, seed: int) -> dict[str, float]:
    """Every asserted figure of the micro model pre-trained with ``seed``."""
    root = work / f"seed-{seed}"
    home = root / "home"
    model = root / "model"
    # this script's own outputs, left by a run cut short
    for made in ("siu", "eval-self", "ga", "eval-ga", "bench"):
        shutil.rmtree(root / made, ignore_errors=True)
    pretrain(world, model, cfg=replace(PretrainConfig.micro(), seed=seed), progress=False, log=fig.quiet)
    retain = retain_model(world, model, fig.CONCEPT, home, log=fig.quiet, progress=False)
    figures: dict[str, float] = fig.gate_figures(model, retain)
    figures |= fig.science_run(world, model, root / "siu", log=fig.quiet)["figures"]
    figures |= fig.self_figures(fig.evaluate(model, model, world, root / "eval-self", "--judge", "rubric"))
    ga = fig.gradient_ascent(world, model, root / "ga")
    figures |= fig.ga_figures(fig.evaluate(ga, model, world, root / "eval-ga"))
    bench = root / "bench"
    assert siu(fig.bench_args(world, model, home, bench, steps="8")) == 0
    figures |= fig.bench_figures(bench)
    return figures


def spread_table(by_seed: dict[int, dict[str, float]]) -> tuple[str, bool]:
    """Every asserted bound, then every reported goal: min / median / max over instances and where it misses."""
    rows = []
    every = True
    for section, bounds in (("asserted", fig.BOUNDS), ("goal", fig.GOALS)):
        for name, bound in bounds.items():
            values = [f[name] for f in by_seed.values() if f.get(name) is not None]
            misses = [s for s, f in by_seed.items() if not fig.holds(name, f.get(name), bounds)]
            if section == "asserted":
                every &= not misses
            met = (
                "all"
                if not misses
                else f"{len(by_seed) - len(misses)}/{len(by_seed)} (not {','.join(map(str, misses))})"
            )
            rows.append([
                name, section, f"{bound.op} {bound.threshold:g}",
                f"{min(values):.3f}" if values else "-", f"{statistics.median(values):.3f}" if values else "-",
                f"{max(values):.3f}" if values else "-", met, bound.test or "(reported)",
            ])  # fmt: skip
    headers = ["figure", "kind", "bound", "min", "median", "max", "instances meeting it", "test"]
    return format_table(headers, rows), every


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-7", help="pre-training seeds, e.g. 0-7 or 0,3,5 (default 0-7)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the tests use 2)")
    ap.add_argument("--work", type=Path, default=Path("instance-spread"), help="models and figures (kept)")
    ap.add_argument("--json", type=Path, default=None, help="also write every seed's figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = seed_list(args.seeds)
    args.work.mkdir(parents=True, exist_ok=True)
    world = args.work / "world"
    if not (world / "manifest.json").is_file():
        build_world(WorldConfig.micro(seed=0), world, overwrite=True, progress=False)
    by_seed: dict[int, dict[str, float]] = {}
    threads: dict[int, int | None] = {}
    for seed in seeds:
        saved = args.work / f"seed-{seed}.json"
        if saved.is_file():
            by_seed[seed] = json.loads(saved.read_text())
            threads[seed] = by_seed[seed].pop("threads", None)
            continue
        threads[seed] = args.threads
        start = time.perf_counter()
        print(f"seed {seed}: pre-training and measuring ...", flush=True)
        by_seed[seed] = instance(world, args.work, seed)
        saved.write_text(json.dumps({"threads": args.threads, **by_seed[seed]}, indent=2) + "\n")
        print(f"seed {seed}: done in {time.perf_counter() - start:.0f} s", flush=True)
    table, every = spread_table(by_seed)
    counts = ", ".join(f"{n} thread(s): seeds {','.join(str(s) for s in by_seed if threads[s] == n)}"
                       for n in sorted({t for t in threads.values() if t}))  # fmt: skip
    print(f"\n{len(by_seed)} instances of the micro model ({counts}):\n{table}")
    print("every asserted bound holds on every instance" if every else "SOME ASSERTED BOUNDS MISS")
    if args.json:
        args.json.write_text(json.dumps({str(s): f for s, f in by_seed.items()}, indent=2) + "\n")
    return 0 if every else 1


if __name__ == "__main__":
    sys.exit(run())
