"""The ``siu`` command line: thin wrappers that call into the layers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from siu.errors import SiuError

Handler = Callable[[argparse.Namespace], int]


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="inspect and validate MMUBench-format benchmark directories",
        description="Work with benchmark directories in the MMUBench format (docs/FORMAT.md).",
    )
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    val = bsub.add_parser(
        "validate",
        help="check a benchmark directory and explain every problem",
        description="Check manifest, concept records and images; print one line per problem "
        "(file, field, what is wrong). Exit 0 if the benchmark is usable, 1 otherwise.",
    )
    val.add_argument("dir", help="benchmark directory (holds manifest.json)")
    val.set_defaults(handler=_cmd_bench_validate)
    show = bsub.add_parser(
        "show",
        help="list the concepts of a benchmark",
        description="List concepts with category, image count and prompt counts.",
    )
    show.add_argument("dir", help="benchmark directory (holds manifest.json)")
    show.add_argument("--json", action="store_true", help="print a JSON list of concept objects")
    show.set_defaults(handler=_cmd_bench_show)


def _cmd_bench_validate(args: argparse.Namespace) -> int:
    from siu.bench.validate import format_problems, validate_benchmark

    problems = validate_benchmark(args.dir)
    print(format_problems(args.dir, problems))
    return 1 if any(p.severity == "error" for p in problems) else 0


def _cmd_bench_show(args: argparse.Namespace) -> int:
    from siu.bench.show import show_benchmark

    print(show_benchmark(args.dir, as_json=args.json))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siu",
        description=(
            "Single Image Unlearning (SIU) for multimodal LLMs, and the MMUBench benchmark.\n\n"
            "Typical flow on the built-in synthetic world (no GPU, no downloads):\n"
            "  siu world build --seed 0 --out world/        # concepts, images, prompts\n"
            "  siu world pretrain --world world/ --out m/   # tiny Hugging Face LLaVA + gates.json\n"
            "  siu bench validate world/                     # check any benchmark directory\n"
            "  siu demo                                      # all of the above, cached"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from siu.world.cli import add_demo_parser, add_world_parser

    add_world_parser(sub)
    _add_bench(sub)
    add_demo_parser(sub)
    from siu.unlearn.cli import add_unlearn_parser

    add_unlearn_parser(sub)
    from siu.eval.cli import add_eval_parser

    add_eval_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except SiuError as err:
        print(f"siu: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("siu: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
