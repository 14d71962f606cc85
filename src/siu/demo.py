"""``siu demo``: the world and its model (cached), SIU on one concept, then every metric and the report."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from siu.bench.load import load_benchmark
from siu.eval.run import evaluate
from siu.report.html import eval_report
from siu.runtime import Runtime, add_runtime_options
from siu.unlearn.run import UnlearnConfig, unlearn
from siu.world.cache import cached_retain_model, default_home, ensure_world_and_model


def unlearn_and_evaluate(
    world: Path,
    model: Path,
    home: Path,
    concept: str | None = None,
    siu_home: Path | None = None,
    runtime: Runtime | None = None,
) -> Path:
    """Unlearn ``concept`` (default: the first person) with SIU's defaults, evaluate; return the report.

    A gold retain model of the concept already cached under ``siu_home`` (``siu bench run`` or
    ``siu world pretrain --without`` made one) joins the evaluation; none is trained here.
    """
    bench = load_benchmark(world)
    if concept is None:
        record = next((c for c in bench.concepts if c.category == "person"), bench.concepts[0])
    else:
        record = bench.concept(concept)
    where = home / record.slug
    unlearned, evaluation = where / "unlearned", where / "eval"
    print(f"[unlearn] SIU on {record.name!r} from its one forget image -> {unlearned}")
    run = unlearn(
        model, record.slug, None, world, UnlearnConfig(seed=0), unlearned, overwrite=True, runtime=runtime
    )
    retain = cached_retain_model(world, model, record.slug, siu_home) if siu_home is not None else None
    print(
        f"[eval] every metric, G-Eval by the world's rubric judge -> {evaluation}"
        + (f" (with the cached gold retain model {retain})" if retain else "")
    )
    evaluate(
        unlearned,
        model,
        world,
        record.slug,
        evaluation,
        judge="rubric",
        overwrite=True,
        run=run,
        retain=retain,
        runtime=runtime,
        render=eval_report,
    )
    shutil.copyfile(evaluation / "report.html", where / "report.html")
    return where / "report.html"


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="run the whole story on the synthetic world (cached)",
        description="The whole story on the synthetic world: build it, pre-train its tiny LLaVA and check "
        "its gates (cached under $SIU_HOME, default ~/.cache/siu), then unlearn one concept with SIU from "
        "its one forget image and evaluate it (every MMUBench metric, G-Eval by the world's rubric judge). "
        "Writes $SIU_HOME/demo/<concept>/ with the unlearned model, metrics.json, answers.jsonl and "
        "report.html. First run about 6 minutes on 2 CPU cores; later runs about 1 minute.",
    )
    demo.add_argument(
        "--concept", default=None, help="the concept to unlearn (default: the world's first person)"
    )
    demo.add_argument("--no-unlearn", action="store_true", help="stop after the world and its model")
    demo.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    demo.add_argument("--home", type=Path, default=None, help="cache directory (default $SIU_HOME)")
    demo.add_argument("--micro", action="store_true", help="the micro world: a one-minute run")
    add_runtime_options(
        demo,
        device=("cpu", "cpu (default: the world's model is 1M parameters and its figures were measured on "
                "the CPU), cuda, cuda:N or mps; pre-training always runs on the CPU"),
        dtype=("float32", "float32 (default), bfloat16 or float16"),
    )  # fmt: skip
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from siu.outputs import quiet_transformers
    from siu.runtime import runtime_from_args

    runtime = runtime_from_args(args, training=True)
    quiet_transformers()
    start = time.perf_counter()
    home = args.home or default_home()
    world, model, gates = ensure_world_and_model(args.micro, args.seed, home)
    if not gates["passed"]:
        print(f"the world's model missed its gates ({', '.join(gates['failed'])}); not unlearning with it")
        return 1
    if args.no_unlearn:
        print(f"demo finished in {time.perf_counter() - start:.0f} s (world and model only)")
        return 0
    report = unlearn_and_evaluate(world, model, home / "demo", args.concept, siu_home=home, runtime=runtime)
    print(
        f"demo finished in {time.perf_counter() - start:.0f} s. Open {report} in a browser; "
        f"`siu unlearn --help` and `siu eval --help` run the same steps on any concept or model."
    )
    return 0
