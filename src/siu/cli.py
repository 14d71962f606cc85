"""The ``siu`` command line: thin wrappers that call into the layers."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from siu.errors import SiuError

Handler = Callable[[argparse.Namespace], int]


BENCH_RUN_DESCRIPTION = """\
For every method, step count, seed and concept: siu unlearn, then siu eval (every metric; the
rubric judge on a synthetic world). On a synthetic world the gold retain model of each concept
(pre-trained without its pictures; trained once and cached) is evaluated too, as the reference row.

Writes to --out: results.json (rewritten after each cell, so an interrupted run keeps its cells),
results.md (mean ± std per method and steps, like the paper's Table 1), results.csv (one row per
cell: its config and every metric, for pandas), report.html (the forgetting-vs-keeping trade-off per
method, every metric against steps with the original and retain models as references, per-concept
bars, example answers for every concept), figures/ (each figure as PNG, PDF and SVG) and, under
cells/, each cell's metrics.json, answers.jsonl, run.json and report.html. The original model's side
of each concept (its answers and attacked answers) is computed once and reused by every cell.

Every option of siu unlearn (training, data, method options, --device/--dtype) and of siu eval
(--judge and the evaluation options; its generation batch is --eval-batch-size here) applies to
every cell; a method option (--npo-beta) to the methods that have it. A LoRA cell keeps its adapter
(cells/<cell>/adapter, which siu eval takes as --model); --resume runs only the cells an
interrupted run did not finish, after checking that the settings are the same.

examples (about 30 s per cell on 2 cores):
  siu bench run --world ~/.cache/siu/worlds/default-seed0 --methods siu,po,ga,ga_kl \\
      --concepts tenran-rixtiv,tesquo-velrix --steps 5,10,20 --seeds 3 --out bench/
  siu bench run --bench mmubench/ --model llava-1.5-7b-hf/ --methods siu,npo --concepts "Donald Trump" \\
      --steps 6 --judge openai --judge-model gpt-4-turbo --gradient-checkpointing --out bench7b/
  siu bench run ... --out bench/ --resume    # after an interruption: only the missing cells
  siu bench run --world ~/.cache/siu/worlds/default-seed0 --methods siu --forget-sets 1,2,4,8 \\
      --sequential --steps 20 --out many/     # many concepts: joint sets and a sequence of 8
"""


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="validate and show MMUBench-format benchmarks; run the unlearning matrix on one",
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
    run = bsub.add_parser(
        "run",
        help="unlearn and evaluate a matrix of methods x concepts x steps x seeds",
        description=BENCH_RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--world", type=Path, help="a synthetic world (siu world build); its model is "
                       "pre-trained once and cached unless --model is given")  # fmt: skip
    where.add_argument("--bench", type=Path, help="benchmark directory (MMUBench format); needs --model")
    run.add_argument("--model", default=None, help="the original model directory (or hub id)")
    run.add_argument(
        "--out", required=True, type=Path, help="output directory (new or empty, unless --overwrite)"
    )
    from siu.unlearn.methods import variants

    run.add_argument("--methods", default="siu,po,ga,ga_kl", help=f"comma list of {', '.join(variants())} "
                     "(the registered methods and named variants); default siu,po,ga,ga_kl")  # fmt: skip
    run.add_argument("--concepts", default="all", help="'all' or a comma list of concept names")
    run.add_argument("--steps", default="6", help="comma list of step counts, e.g. 6,12,24 (default 6)")
    run.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per cell (default 1)")
    run.add_argument(
        "--retain",
        default="auto",
        help="gold retain models for the reference row: auto (synthetic world: trained once per concept "
        "and cached, ~7 min each on 2 cores), none, or a path with {concept} (e.g. retain/{concept})",
    )
    run.add_argument("--home", type=Path, default=None, help="cache directory (default $SIU_HOME)")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    run.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished cells of an interrupted run into --out (same settings; cells trained under "
        "another siu's method defaults are refused) and run the rest",
    )
    many = run.add_argument_group(
        "many concepts",
        "forget several concepts at once instead of one per cell: forget-sets.json, forget-sets.md and "
        "forget-sets.html (plots against the number of concepts forgotten and against the request)",
    )
    many.add_argument(
        "--forget-sets",
        default=None,
        metavar="SIZES",
        help="sizes of joint forget sets, e.g. 1,2,4,8,all: the first K concepts (round-robin across "
        "categories, or the order of --concepts) forgotten in one run and evaluated as a forget set; "
        "--steps is then one step cap",
    )
    many.add_argument(
        "--sequential",
        action="store_true",
        help="with --forget-sets: also forget the largest set one request after another, every "
        "intermediate model kept and checked on held-out pictures",
    )
    many.add_argument(
        "--check-images", type=int, default=8, help="held-out pictures per concept in each sequential check"
    )
    from siu.eval.cli import add_eval_options
    from siu.unlearn.cli import add_training_options

    add_training_options(run, one_run=False)
    add_eval_options(run, batch_flag="--eval-batch-size")
    run.set_defaults(handler=_cmd_bench_run)
    report = bsub.add_parser(
        "report",
        help="rewrite results.md, results.csv, report.html and figures/ of a siu bench run directory",
        description="Rewrite results.md, results.csv, report.html and figures/ from results.json, e.g. "
        "after an interrupted run (results.json keeps every finished cell) or with a newer siu.",
    )
    report.add_argument("dir", type=Path, help="the --out directory of siu bench run")
    report.set_defaults(handler=_cmd_bench_report)


def _cmd_bench_report(args: argparse.Namespace) -> int:
    from siu.matrix import write_summaries

    print(write_summaries(args.dir))  # it names every file it wrote
    return 0


def _cmd_bench_run(args: argparse.Namespace) -> int:
    from siu.eval.cli import eval_options_from_args
    from siu.matrix import VARIANTS, run_matrix
    from siu.outputs import quiet_transformers
    from siu.runtime import runtime_from_args
    from siu.unlearn.cli_config import comma_list, method_options_from_args, training_fields_from_args

    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError as err:
        raise SiuError(f"--steps must be a comma list of integers, got {args.steps!r}") from err
    if args.bench is not None and args.model is None:
        raise SiuError("--bench needs --model (with --world the world's own model is used)")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in VARIANTS]
    if unknown:
        raise SiuError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    names = [VARIANTS[m][0] for m in methods]
    # a method flag applies to the methods that have it; one that none of them has is an error
    options = {m: method_options_from_args(args, VARIANTS[m][0], others=names) for m in methods}
    runtime = runtime_from_args(args, training=True)
    quiet_transformers()
    if args.sequential and args.forget_sets is None:
        raise SiuError("--sequential belongs to --forget-sets (e.g. --forget-sets 8 --sequential)")
    # what a forget-set run and the matrix take alike
    shared = {
        "home": args.home,
        "overwrite": args.overwrite,
        "training": training_fields_from_args(args),
        "method_options": {m: o for m, o in options.items() if o},
        "eval_options": eval_options_from_args(args),
        "runtime": runtime,
    }
    concepts = None if args.concepts == "all" else comma_list(args.concepts)
    if args.forget_sets is not None:
        from siu.forget_sets import run_forget_sets

        if len(steps) != 1 or args.seeds != 1 or args.resume:
            raise SiuError(
                "--forget-sets takes one --steps value (each run's step cap), one seed, no --resume"
            )
        if args.retain != "auto":
            raise SiuError("--forget-sets draws no retain model (none that never saw a whole set is trained)")
        run_forget_sets(
            args.model,
            args.world or args.bench,
            args.out,
            methods,
            args.forget_sets,
            steps[0],
            concepts=concepts,
            sequential=args.sequential,
            check_images=args.check_images,
            **shared,
        )
        return 0
    run_matrix(
        args.model,
        args.world or args.bench,
        args.out,
        methods,
        concepts,
        steps,
        args.seeds,
        retain=args.retain,
        resume=args.resume,
        **shared,
    )
    return 0


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
    from siu.demo import add_demo_parser
    from siu.world.cli import add_world_parser

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
        code = handler(args)
        sys.stdout.flush()  # inside the try: a reader that went away (`| head`) is not an error
        return code
    except BrokenPipeError:
        # the reader has all it wanted; send what Python still flushes at exit nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SiuError as err:
        print(f"siu: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("siu: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
