"""``siu eval``: every MMUBench metric of one unlearned concept, written to metrics.json + answers.jsonl."""

from __future__ import annotations

import argparse
from pathlib import Path

from siu.runtime import add_runtime_options

DESCRIPTION = """\
Measure how well a concept was unlearned (MMUBench metrics, SIU.md section 7).

Compares the unlearned model with the original on the concept's forget image, its held-out test
images, its fact questions, other-language and multi-hop prompts, and on everything else in the
benchmark (specificity). Writes metrics.json (each metric with its direction: higher or lower is
better) and answers.jsonl (every answer behind every number) to --out, and prints the table.

A forget set (--concept A,B,C: what a joint or sequential run forgot) is evaluated concept by concept
into --out/<concept>/, each concept's specificity measured on the concepts outside the set, and
forget-set.json holds every metric per concept and their mean.

G-Eval needs a judge: --judge rubric (synthetic world only: the paper's rubric applied to the
world's ground truth), openai (any OpenAI-compatible endpoint; key from $OPENAI_API_KEY or
--judge-key-env) or hf (a local causal LM, --judge-model PATH). Without one, g_eval is reported as
missing, never invented. --retain adds the gold retain model's membership-inference AUCs beside the
unlearned model's (make one with `siu world pretrain --without C`).
"""

EPILOG = """\
examples:
  siu eval --model m-forgot/ --original m/ --bench world/ --concept "Tenran Rixtiv" --judge rubric --out ev/
  siu eval --model seq/02-mira-castellan --original m/ --bench world/ --concept "Tenran Rixtiv,Mira Castellan" \\
           --out ev/   # a forget set: every concept the model was made to forget
  siu eval --model out/ --original llava-1.5-7b-hf/ --bench mmubench/ --concept "Donald Trump" \\
           --judge openai --judge-model gpt-4-turbo --out ev/
"""


def add_eval_options(p: argparse.ArgumentParser, batch_flag: str = "--batch-size") -> None:
    """The judge and evaluation options: ``siu eval``'s, and the same set on ``siu bench run`` (whose
    --batch-size is training's, so its generation batch is ``batch_flag`` --eval-batch-size)."""
    group = p.add_argument_group("evaluation")
    group.add_argument(
        "--judge",
        choices=("rubric", "openai", "hf"),
        default=None,
        help="G-Eval judge (none: g_eval missing)",
    )
    group.add_argument(
        "--judge-model", default=None, help="openai: model name (gpt-4-turbo); hf: local model path"
    )
    group.add_argument(
        "--judge-url", default=None, help="openai: base URL of the endpoint (https://api.openai.com/v1)"
    )
    group.add_argument(
        "--judge-key-env", default="OPENAI_API_KEY", help="openai: environment variable with the key"
    )
    group.add_argument(
        "--test-images",
        type=int,
        default=None,
        help="use only the first N held-out images of the concept (default: all of them, as the paper)",
    )
    group.add_argument(
        "--max-new-tokens",
        type=int,
        default=48,
        help="answer length limit in tokens (48); the share of answers cut there is reported",
    )
    group.add_argument(
        batch_flag, dest="eval_batch_size", type=int, default=32, help="generation batch size (32)"
    )


def eval_options_from_args(args: argparse.Namespace) -> dict[str, object]:
    """:func:`siu.eval.run.evaluate`'s keyword arguments from :func:`add_eval_options`' flags."""
    return {
        "judge": args.judge,
        "judge_model": args.judge_model,
        "judge_url": args.judge_url,
        "judge_key_env": args.judge_key_env,
        "test_images": args.test_images,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.eval_batch_size,
    }


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure the unlearning of one concept (all MMUBench metrics)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        help="the unlearned model directory, or its LoRA adapter (siu unlearn --adapter-only)",
    )
    p.add_argument(
        "--base",
        default=None,
        help="with an adapter as --model: its base model (default: the one the adapter's run.json "
        "or adapter_config.json names)",
    )
    p.add_argument("--original", required=True, help="the original model directory (before unlearning)")
    p.add_argument("--bench", required=True, help="benchmark directory (MMUBench format)")
    p.add_argument(
        "--concept",
        required=True,
        help="the unlearned concept: name, alias or folder name; A,B,C evaluates a forget set (a joint or "
        "sequential run's): every metric per concept in --out/<concept>/, their mean in forget-set.json, "
        "each concept's specificity on the concepts not in the set",
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output directory (new or empty, unless --overwrite)"
    )
    add_eval_options(p)
    p.add_argument("--retain", default=None, help="gold retain model (never saw the concept's images)")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow model code from the model directories"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_runtime_options(p, device_map=True)
    p.set_defaults(handler=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from siu.eval.run import evaluate
    from siu.outputs import output_claimed, quiet_transformers
    from siu.report.html import eval_report
    from siu.runtime import runtime_from_args
    from siu.unlearn.cli_config import comma_list
    from siu.unlearn.inputs import check_apart

    runtime = runtime_from_args(args)
    names = comma_list(args.concept)
    quiet_transformers()
    check_apart(
        args.out, [args.bench, args.model, args.original, args.retain, args.base]
    )  # no lock inside an input
    with output_claimed(args.out):  # taken before any work
        evaluate(
            args.model,
            args.original,
            args.bench,
            names if len(names) > 1 else names[0],
            args.out,
            retain=args.retain,
            **eval_options_from_args(args),  # type: ignore[arg-type]
            trust_remote_code=args.trust_remote_code,
            overwrite=args.overwrite,
            runtime=runtime,
            base=args.base,
            render=eval_report,
        )
    return 0
