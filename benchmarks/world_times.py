"""Print how long the synthetic world takes on this machine, next to its budgets.

    python benchmarks/world_times.py [--skip-default]

Budgets (2-core CPU): default world build + pre-train <= 600 s; micro world <= 60 s.
Each run starts from nothing (fresh temp directories, no cache).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from siu.tables import format_table
from siu.world.build import WorldConfig, build_world
from siu.world.pretrain import PretrainConfig, pretrain


def run(name: str, world_cfg: WorldConfig, cfg: PretrainConfig, budget: float) -> list[object]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        world = build_world(world_cfg, Path(tmp) / "world", progress=False)
        built = time.perf_counter() - start
        gates = pretrain(world, Path(tmp) / "model", cfg=cfg, progress=False, log=lambda *_: None)
        total = time.perf_counter() - start
    return [name, built, total - built, total, budget, total / budget, "yes" if gates["passed"] else "NO"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-default", action="store_true", help="only time the micro world")
    args = parser.parse_args()
    rows = [run("micro", WorldConfig.micro(), PretrainConfig.micro(), 60.0)]
    if not args.skip_default:
        rows.append(run("default", WorldConfig(), PretrainConfig(), 600.0))
    headers = ["world", "build s", "pretrain+gates s", "total s", "budget s", "total/budget", "gates pass"]
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
