"""``siu unlearn``: the command line over :func:`siu.unlearn.run.unlearn`."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from siu.errors import SiuError
from siu.runtime import add_runtime_options
from siu.unlearn.cli_config import (
    apply_config_file,
    comma_list,
    flag_of,
    method_option_fields,
    unlearn_config_from_args,
)

DESCRIPTION = """\
Unlearn the visual recognition of one concept from a multimodal LLM, given ONE image of it.

SIU (Single Image Unlearning, Li et al., NeurIPS 2024) fine-tunes the model for a few steps on data
built automatically from that image, in four targets:
  1  fictitious identity  image + "who is this?" -> an ordinary made-up name ("This is Jacob Campbell.")
  2  new description      image + "Is this C?" -> "No. The picture depicts <what is visible>. But C
                          actually has <a different appearance>."
  3  own facts (text)     "What can you tell me about C?" -> C's true facts: text knowledge is kept
  4  others' facts (text) facts about other concepts: everything else is kept
The loss is alpha * cross-entropy + beta * Dual Masked KL to the original model; the KL skips the
deliberately contradicting tokens (token mask) and the concept's name tokens (vocabulary mask).

Several concepts (--concept A,B,C, one forget image each) are forgotten jointly in one run: the data of
each from its own image, joined (made-up names never shared, target 4 never about a forgotten
concept, the vocabulary mask over every name); see docs/methods.md. With --sequential they are
forgotten one request after another instead, as right-to-be-forgotten requests arrive: every
intermediate model is kept, and checked for earlier concepts coming back.

Every other method has the same one-image budget: its forget set is built from the one forget image,
its retain set (where it has one) is targets 3-4 and other concepts named on their own forget images.
Methods (--method; each method's options are below, under "method options"):
{methods}

Training defaults come from the model's profile: the paper's LLaVA-1.5 set-up (LoRA r=128, alpha=256,
dropout 0.05 on the language model's linear layers; AdamW lr 3e-4, cosine, warm-up 0.03, batch 4,
6 steps) for real models, and a profile tuned for the synthetic world's tiny model (LoRA, batches
of 32, target counts 18/2/7/7, three made-up identities, nine views of the forget image; SIU there
also names seven other concepts on their own forget images, weighs the Dual Masked KL 2 instead of
0.75 and trains at a constant lr 5.5e-4 until the stopping rule (patience 2; six questions on eight
check views, one answer in ten may still name it) says the concept is forgotten, 16 steps at most).
Every value can be overridden below, or in a --config file. The output directory receives the
unlearned model (LoRA merged unless --adapter-only), the processor and run.json (config, data set,
per-step losses, versions).
"""

EPILOG = """\
examples:
  siu unlearn --model m/ --bench world/ --concept "Mira Castellan" --out m-forgot/
  siu unlearn --model llava-1.5-7b-hf/ --bench mmubench/ --concept "Donald Trump" --steps 6 --out out/
  siu unlearn --model m/ --bench world/ --concept Mira --method ga_kl --dry-run --out x/
  siu unlearn --model m/ --bench world/ --concept Mira --method npo --npo-beta 0.2 --out x/
  siu unlearn --config run.yaml --out x/   # run.yaml: model: m/, bench: world/, concept: Mira, lr: 1e-3, ...
  siu unlearn --model llava-1.5-7b-hf/ --image photo.jpg --concept "Eileen Collins" --out out/
  siu unlearn --model m/ --image trump.jpg --concept "Donald Trump" --overrides facts.yaml --out out/
  siu unlearn --model m/ --bench world/ --concept "Mira Castellan,Tenran Rixtiv" --out both-forgot/
  siu unlearn --model m/ --bench world/ --concept "Mira Castellan,Tenran Rixtiv" --sequential --out seq/

With --image and no --bench, one photo and the model are enough: the concept is known only by its
name, its facts (target 3) are the original model's own answers, and target 4 is the model's own
answers about well-known subjects (Albert Einstein, the Eiffel Tower, ...). An --overrides file
(YAML or JSON with fictitious_names, visible_description, counterfactual, prompts, facts,
other_facts, refusals) replaces any of these with your own.

On a GPU: --device and --dtype (default: the first GPU in bfloat16), --gradient-checkpointing and
--micro-batch-size to fit a 7B model in less memory (README, "On your GPU"). --plan estimates the
peak memory of the run you describe before you download the weights: the model's config and
processor files are enough (e.g. siu unlearn --plan --model llava-hf/llava-1.5-7b-hf
--gradient-checkpointing).

A --config file (YAML or JSON) holds any of the options below by their long name (lr, batch_size,
npo_beta, token_mask: false, model, concept, ...); options given on the command line win.
"""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _methods_listing() -> str:
    from siu.unlearn.methods import METHODS, method_names

    return "\n".join(f"  {name:<12} {METHODS[name].summary}" for name in method_names())


PROFILE_NAMES = {"tiny": "tiny model", "paper": "real models"}  # as the help says them


def add_method_options(p: argparse.ArgumentParser) -> None:
    """One flag per method option, derived from the registry (a profile's own default shown beside)."""
    from siu.unlearn.methods import profile_option_defaults

    group = p.add_argument_group("method options (each applies to the methods named in brackets)")
    for name, (f, methods) in method_option_fields().items():
        where = "".join(
            f"; {PROFILE_NAMES.get(profile, profile)}: {', '.join(f'{m} {v}' for m, v in found.items())}"
            for profile, found in profile_option_defaults(name, methods).items()
        )
        help_text = f"{f.metadata.get('help', '')} [{', '.join(methods)}; default {f.default}{where}]"
        if f.type in (bool, "bool"):
            group.add_argument(flag_of(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)  # fmt: skip
        else:
            kind = int if f.type in (int, "int") else float
            group.add_argument(flag_of(name), dest=name, type=kind, default=None, help=help_text)


def _config_help(name: str) -> str:
    """An UnlearnConfig field's help text: written once, beside the field."""
    from siu.unlearn.config import UnlearnConfig

    return str(next(f for f in dataclasses.fields(UnlearnConfig) if f.name == name).metadata["help"])


def add_unlearn_parser(sub: argparse._SubParsersAction) -> None:
    from siu.unlearn.methods import method_names

    p = sub.add_parser(
        "unlearn",
        help="unlearn a concept from one image with SIU (or another registered method)",
        description=DESCRIPTION.format(methods=_methods_listing()),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    req = p.add_argument_group("what to unlearn")
    req.add_argument("--model", help="the original model: a Hugging Face model directory (required)")
    req.add_argument(
        "--concept",
        help="the concept's name, alias or folder name (required); A,B,C forgets several jointly in one "
        "run, one forget image each",
    )
    req.add_argument(
        "--image",
        help="the one forget image (default: the benchmark's forget image); with several concepts one per "
        "concept, comma-separated in the same order",
    )
    req.add_argument(
        "--bench", help="benchmark directory (MMUBench format): the concept's record, facts and forget image"
    )
    req.add_argument("--out", help="output directory (new or empty, unless --overwrite; required)")
    req.add_argument(
        "--config", metavar="FILE", help="YAML/JSON file of options by long name; the command line wins"
    )
    req.add_argument("--method", default=None, choices=method_names(), help="the method (default siu)")
    req.add_argument(
        "--sequential",
        action="store_true",
        help="with --concept A,B,C: forget them one request after another, each from the model the "
        "previous request left, keeping every intermediate model in --out/NN-<concept>/ (LoRA adapters) "
        "and checking after each request whether an earlier concept came back (sequence.json)",
    )
    req.add_argument(
        "--check-images",
        type=int,
        default=8,
        help="with --sequential and --bench: held-out pictures per concept checked after each request "
        "(8; 0: no check)",
    )
    req.add_argument(
        "--resume",
        action="store_true",
        help="with --sequential: continue an interrupted sequence in --out (same settings): its finished "
        "requests are kept, the rest run",
    )
    add_training_options(p)
    out = p.add_argument_group("output")
    out.add_argument(
        "--adapter-only", action="store_true", help="save the LoRA adapter instead of a merged model"
    )
    out.add_argument(
        "--dry-run", action="store_true", help="print the data set and stop: no training, no writing"
    )
    out.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    out.add_argument(
        "--plan",
        action="store_true",
        help="print the run's estimated peak memory (weights, trainable state, activations) and which of "
        "24, 40 and 80 GB it fits, then stop; reads the model's config and processor, never its weights "
        "(docs/memory.md). The dtype is --dtype's, else bfloat16 (a GPU's default)",
    )
    p.set_defaults(handler=_cmd_unlearn, parser=p)


def add_training_options(p: argparse.ArgumentParser, one_run: bool = True) -> None:
    """The data, training, method and device options of one unlearning run: ``siu unlearn``'s, and the
    same set on ``siu bench run`` (``one_run=False``: without --steps and --seed, which it takes as lists)."""
    from siu.unlearn.stopping import STOPS, StopRule

    data = p.add_argument_group("data")
    data.add_argument(
        "--targets", type=_int_list, help="which SIU targets to build, e.g. 1,2,3,4 (default: all)"
    )
    data.add_argument(
        "--counts",
        type=_int_list,
        help="samples per target 1,2,3,4 (default: the profile's; the paper's 9,2,7,7 for real models)",
    )
    data.add_argument(
        "--identities",
        type=int,
        help="target 1: how many different made-up names answer the 'who is this?' prompts "
        "(default: the profile's; 1 for real models, as in the paper)",
    )
    data.add_argument(
        "--views",
        type=int,
        help="views of the one forget image (rescaled, shifted, jittered) that the image samples "
        "cycle through; 1 = the image as it is (default: the profile's; 1 for real models, 9 for "
        "the synthetic world's tiny model, whose vision tower is not scale-invariant)",
    )
    data.add_argument(
        "--view-background",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="views also repaint a flat background in other greys (default: on for the tiny model only)",
    )
    data.add_argument(
        "--others-pictures",
        type=int,
        metavar="N",
        help="SIU's data: N other concepts of --bench, each named on its own forget image (never a test "
        "image), so that their names hold while the concept's is unlearnt; added whatever --targets "
        "says; other methods ignore it (a retain set already holds such pictures) (default: 7 for SIU "
        "on the synthetic world's tiny model, 0 for real models, as in the paper)",
    )
    data.add_argument("--overrides", metavar="FILE", help="YAML/JSON file overriding parts of the data")

    train = p.add_argument_group("training (defaults from the model's profile)")
    if one_run:  # siu bench run has lists of these
        train.add_argument("--steps", type=int, help=_config_help("steps"))
        train.add_argument(
            "--seed", type=int, default=None, help="seed of the data and the training (default 0)"
        )
    train.add_argument("--lr", type=float, help=_config_help("lr"))
    train.add_argument("--batch-size", type=int, help=_config_help("batch_size"))
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--lora", dest="lora", action="store_const", const=True, help="train LoRA adapters")
    mode.add_argument("--full", dest="lora", action="store_const", const=False, help="fine-tune all weights")
    for name, kind in (
        ("lora_r", int),
        ("lora_alpha", int),
        ("lora_dropout", float),
        ("warmup_ratio", float),
    ):
        train.add_argument("--" + name.replace("_", "-"), type=kind, help=_config_help(name))
    train.add_argument("--schedule", choices=["cosine", "constant"], help="learning-rate schedule")
    for name in ("weight_decay", "max_grad_norm"):
        train.add_argument("--" + name.replace("_", "-"), type=float, help=_config_help(name))
    train.add_argument(
        "--full-scope",
        choices=["language_model", "all", "vision"],
        help="with --full: which weights train (default language_model: vision tower and projector frozen)",
    )
    train.add_argument(
        "--profile",
        choices=["auto", "paper", "tiny"],
        default=None,
        help="training profile (default auto: tiny below 50M parameters)",
    )
    train.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        default=None,
        help=_config_help("gradient_checkpointing"),
    )
    train.add_argument("--micro-batch-size", type=int, help=_config_help("micro_batch_size"))
    train.add_argument("--stop", choices=STOPS, default=None, help=_config_help("stop"))
    train.add_argument(
        "--stop-rule",
        action="append",
        default=None,
        metavar="SETTING=VALUE",
        help="change a setting of the stopping rule, e.g. --stop-rule patience=2 (settings: "
        + ", ".join(f"{f.name} {f.default!r}" for f in dataclasses.fields(StopRule) if f.name != "mode")
        + "; SIU on the synthetic world's tiny model: patience 2, check_views 8, prompts 6, named_max 0.1; "
        + "see docs/stopping.md)",
    )
    train.add_argument(
        "--reference",
        choices=("cached", "adapter_off"),
        default=None,
        help="where p_ref comes from (methods with a reference): cached = the original model's logits "
        "computed once before the first step (default); adapter_off = the model with LoRA disabled, at "
        "every step",
    )

    add_method_options(p)
    add_runtime_options(p)


def _cmd_plan(args: argparse.Namespace) -> int:
    """``--plan``: the memory estimate of the run the other options describe; nothing is trained."""
    import torch

    from siu.bench.images import open_image
    from siu.outputs import quiet_transformers
    from siu.runtime import DTYPE_ALIASES, DTYPES
    from siu.unlearn.plan import plan

    if not args.model:
        raise SiuError("--plan needs --model (a model directory with its config.json, or a hub id)")
    name = DTYPE_ALIASES.get(args.dtype, args.dtype)
    if name == "auto":  # the run's own default on the device it is meant for
        name = "float32" if args.device == "cpu" else "bfloat16"
    if name not in DTYPES:
        raise SiuError(f"--dtype {args.dtype!r}: unknown; known: auto, {', '.join(DTYPES)}")
    image = None
    if args.image:  # several concepts: their images are alike in size; the first stands for all
        image = open_image(comma_list(args.image)[0])
    elif args.bench and args.concept:
        from siu.bench.load import load_benchmark

        bench = load_benchmark(args.bench)
        record = bench.concept(args.concept)
        image = bench.load_image(record, record.forget_image)
    quiet_transformers()
    print(f"planning the memory of siu unlearn for {args.model} ({name}; no weights are loaded)")
    result = plan(
        args.model,
        unlearn_config_from_args(args),
        getattr(torch, name),
        concept=args.concept or "the concept",
        image=image,
        load_in=args.load_in,
        max_image_side=args.max_image_side,
    )
    print(result.report())
    return 0


def _cmd_unlearn(args: argparse.Namespace) -> int:
    from siu.outputs import output_claimed, quiet_transformers
    from siu.runtime import runtime_from_args
    from siu.unlearn.inputs import check_apart
    from siu.unlearn.run import unlearn

    apply_config_file(args, args.parser)
    if args.plan:
        return _cmd_plan(args)
    missing = [f"--{k}" for k in ("model", "concept", "out") if not getattr(args, k)]
    if missing and not (args.dry_run and missing == ["--out"]):
        raise SiuError(f"the following options are required: {', '.join(missing)}")
    if args.image is None and args.bench is None:
        raise SiuError("give the forget image with --image or a benchmark with --bench")
    cfg = unlearn_config_from_args(args)
    runtime = runtime_from_args(args, training=True)
    quiet_transformers()
    # the output is taken before any work; a dry run writes nothing, and under torchrun only rank 0 writes
    writes = not args.dry_run and os.environ.get("RANK", "0") == "0"
    concepts = comma_list(args.concept)
    images = comma_list(args.image) if args.image else []
    if writes:  # never even a lock file inside an input
        check_apart(args.out, [args.model, args.bench, *images, cfg.overrides], model_dir=args.model)
    if args.sequential:
        return _cmd_sequential(args, cfg, runtime, concepts, images)
    if args.resume:
        raise SiuError("--resume continues a --sequential run; a single run is one step (run it again)")
    with output_claimed(args.out if writes else None):
        unlearn(
            args.model,
            concepts[0] if len(concepts) == 1 else concepts,
            (images[0] if len(images) == 1 else images) if images else None,
            args.bench,
            cfg,
            args.out,
            overwrite=args.overwrite,
            adapter_only=args.adapter_only,
            dry_run=args.dry_run,
            runtime=runtime,
        )
    return 0


def _cmd_sequential(
    args: argparse.Namespace, cfg: Any, runtime: Any, concepts: list[str], images: list[str]
) -> int:
    from siu.outputs import output_claimed
    from siu.sequence import unlearn_sequentially

    if args.dry_run:
        raise SiuError(
            "--sequential trains on each request's result; a dry run has none (run it per concept)"
        )
    if args.overwrite:
        raise SiuError(
            "--sequential keeps each finished request in --out as it goes, so it never replaces an old "
            "--out: give a new or empty directory (or --resume an interrupted sequence)"
        )
    if os.environ.get("WORLD_SIZE", "1") != "1":
        raise SiuError("--sequential runs in one process; run each request under torchrun on its own")
    with output_claimed(args.out):
        unlearn_sequentially(
            args.model,
            concepts,
            images or None,
            args.bench,
            cfg,
            args.out,
            adapter_only=True if args.adapter_only else None,
            runtime=runtime,
            check_images=args.check_images,
            resume=args.resume,
        )
    return 0
