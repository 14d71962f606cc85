"""CLI commands of the synthetic world: ``siu world build|pretrain``."""

from __future__ import annotations

import argparse
import time

from siu.errors import SiuError


def add_world_parser(sub: argparse._SubParsersAction) -> None:
    world = sub.add_parser(
        "world",
        help="build the synthetic world and pre-train its tiny LLaVA",
        description="The synthetic world: an MMUBench-format benchmark drawn from a seed, and a tiny "
        "Hugging Face LLaVA trained on it (no GPU, no downloads).",
    )
    wsub = world.add_subparsers(dest="world_command", required=True, metavar="COMMAND")
    build = wsub.add_parser(
        "build",
        help="write the benchmark directory",
        description="Draw concepts (people, cartoon characters, logos, buildings, art styles) with made-up "
        "names, aliases, facts, images and prompts, and write them in the MMUBench format. "
        "The same seed gives byte-identical output.",
    )
    build.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    build.add_argument("--out", required=True, help="output directory (must be new or empty)")
    build.add_argument("--concepts", type=int, default=24, help="number of concepts, 4-28 (default 24)")
    build.add_argument("--images", type=int, default=50, help="benchmark images per concept (default 50)")
    build.add_argument(
        "--micro", action="store_true", help="a 4-concept world with 12 images each, for tests"
    )
    build.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    build.set_defaults(handler=_cmd_build)

    pre = wsub.add_parser(
        "pretrain",
        help="train the tiny LLaVA (or a gold retain model) and measure its gates",
        description="Train a tiny LlavaForConditionalGeneration on a corpus built from the world, save it "
        "with save_pretrained (safetensors) and write gates.json: recognition, facts, multi-hop, "
        "multilingual and generic-VQA accuracy on held-out images and prompts. With --without C the "
        "model never sees an image of C (its text facts stay): the gold retain model, the exact "
        "unlearning that approximate methods try to match. Results are cached by content hash.",
    )
    pre.add_argument("--world", required=True, help="world directory made by `siu world build`")
    pre.add_argument("--out", required=True, help="model output directory")
    pre.add_argument("--without", metavar="CONCEPT", help="leave out every image of this concept")
    pre.add_argument("--steps", type=int, help="optimiser steps (default: 1400, micro world: 800)")
    pre.add_argument("--micro", action="store_true", help="use the small training profile of the micro world")
    pre.add_argument("--overwrite", action="store_true", help="replace an existing, different model in --out")
    pre.set_defaults(handler=_cmd_pretrain)


def _cmd_build(args: argparse.Namespace) -> int:
    from siu.outputs import output_claimed
    from siu.world.build import WorldConfig, build_world

    cfg = WorldConfig.micro(args.seed) if args.micro else WorldConfig(args.seed, args.concepts, args.images)
    if not 4 <= cfg.concepts <= 28:
        raise SiuError(f"--concepts must be between 4 and 28, not {cfg.concepts}")
    if cfg.images < 2:
        raise SiuError("--images must be at least 2 (one forget image and one test image)")
    start = time.perf_counter()
    with output_claimed(args.out):  # taken before any work
        out = build_world(cfg, args.out, overwrite=args.overwrite)
    print(
        f"wrote {cfg.concepts} concepts x {cfg.images} images to {out} in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    import dataclasses

    from siu.outputs import output_claimed, quiet_transformers
    from siu.unlearn.inputs import check_apart
    from siu.world.pretrain import PretrainConfig, pretrain

    quiet_transformers()
    cfg = PretrainConfig.micro() if args.micro else PretrainConfig()
    if args.steps is not None:
        if args.steps < 1:
            raise SiuError("--steps must be positive")
        cfg = dataclasses.replace(cfg, steps=args.steps)
    check_apart(args.out, [args.world])  # no lock file inside the world
    with output_claimed(args.out):  # taken before any work
        gates = pretrain(args.world, args.out, without=args.without, cfg=cfg, overwrite=args.overwrite)
    return 0 if gates["passed"] else 1
