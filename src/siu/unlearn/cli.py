"""``siu unlearn``: the command line over :func:`siu.unlearn.run.unlearn`."""

from __future__ import annotations

import argparse

from siu.errors import SiuError

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
Baselines with the same one-image budget: po (fine-tune on refusals), ga (gradient ascent on answers
naming C), ga_kl (GA + KL to the original model).

Training defaults come from the model's profile: the paper's LLaVA-1.5 set-up (LoRA r=128, alpha=256,
dropout 0.05 on the language model's linear layers; AdamW lr 3e-4, cosine, warm-up 0.03, batch 4,
6 steps) for real models, and a profile tuned for the synthetic world's tiny model (LoRA, lr 1e-3,
batches of 32 of its 34 samples, 10 steps, target counts 18/2/7/7, three made-up identities, nine
views of the forget image).
Every value can be overridden below. The output directory receives the unlearned model (LoRA merged
unless --adapter-only), the processor and run.json (config, data set, per-step losses, versions).
"""

EPILOG = """\
examples:
  siu unlearn --model m/ --bench world/ --concept "Mira Castellan" --out m-forgot/
  siu unlearn --model llava-1.5-7b-hf/ --bench mmubench/ --concept "Donald Trump" --steps 6 --out out/
  siu unlearn --model m/ --bench world/ --concept Mira --method ga_kl --dry-run --out x/
  siu unlearn --model m/ --image trump.jpg --concept "Donald Trump" --overrides facts.yaml --out out/

With --image and no --bench, the concept is known only by its name: its facts (target 3) are the
original model's own answers, and target 4 needs other_facts in an --overrides file (YAML or JSON
with fictitious_names, visible_description, counterfactual, prompts, facts, other_facts, refusals).
"""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_unlearn_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unlearn",
        help="unlearn a concept from one image with SIU (or the PO / GA / GA+KL baselines)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    req = p.add_argument_group("what to unlearn")
    req.add_argument("--model", required=True, help="the original model: a Hugging Face model directory")
    req.add_argument("--concept", required=True, help="the concept's name, alias or folder name")
    req.add_argument("--image", help="the one forget image (default: the benchmark's forget image)")
    req.add_argument(
        "--bench", help="benchmark directory (MMUBench format): the concept's record, facts and forget image"
    )
    req.add_argument("--out", required=True, help="output directory (new or empty, unless --overwrite)")
    req.add_argument(
        "--method",
        default="siu",
        choices=["siu", "po", "ga", "ga_kl"],
        help="siu (default), or a baseline: po, ga, ga_kl",
    )

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
        "cycle through; 1 = the image as it is (default: the profile's; 1 for real models, 5 for "
        "the synthetic world's tiny model, whose vision tower is not scale-invariant)",
    )
    data.add_argument(
        "--view-background",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="views also repaint a flat background in other greys (default: on for the tiny model only)",
    )
    data.add_argument("--overrides", metavar="FILE", help="YAML/JSON file overriding parts of the data")

    train = p.add_argument_group("training (defaults from the model's profile)")
    train.add_argument("--steps", type=int, help="optimiser steps (paper: 6)")
    train.add_argument("--lr", type=float, help="learning rate (paper: 3e-4)")
    train.add_argument("--batch-size", type=int, help="samples per step (paper: 4)")
    train.add_argument("--seed", type=int, default=0, help="seed of the data and the training (default 0)")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--lora", dest="lora", action="store_const", const=True, help="train LoRA adapters")
    mode.add_argument("--full", dest="lora", action="store_const", const=False, help="fine-tune all weights")
    train.add_argument("--lora-r", type=int, help="LoRA rank (paper: 128)")
    train.add_argument("--lora-alpha", type=int, help="LoRA alpha (paper: 256)")
    train.add_argument("--lora-dropout", type=float, help="LoRA dropout (paper: 0.05)")
    train.add_argument("--warmup-ratio", type=float, help="warm-up share of the steps (paper: 0.03)")
    train.add_argument("--schedule", choices=["cosine", "constant"], help="learning-rate schedule")
    train.add_argument("--weight-decay", type=float, help="AdamW weight decay (paper: 0)")
    train.add_argument("--max-grad-norm", type=float, help="gradient clipping norm (default 1.0; 0: off)")
    train.add_argument(
        "--full-scope",
        choices=["language_model", "all", "vision"],
        help="with --full: which weights train (default language_model: vision tower and projector frozen)",
    )
    train.add_argument(
        "--profile",
        choices=["auto", "paper", "tiny"],
        default="auto",
        help="training profile (default auto: tiny below 50M parameters)",
    )

    loss = p.add_argument_group("loss")
    loss.add_argument("--alpha", type=float, default=0.9, help="SIU: weight of the cross-entropy (0.9)")
    loss.add_argument("--beta", type=float, default=0.75, help="SIU: weight of the Dual Masked KL (0.75)")
    loss.add_argument("--no-token-mask", action="store_true", help="SIU ablation: KL on every answer token")
    loss.add_argument("--no-vocab-mask", action="store_true", help="SIU ablation: KL on the whole vocabulary")
    loss.add_argument("--kl-weight", type=float, default=1.0, help="GA+KL: weight of the KL term (1.0)")
    loss.add_argument(
        "--reference",
        choices=("cached", "adapter-off"),
        default="cached",
        help="where p_ref comes from (SIU, GA+KL): cached = the original model's logits computed once "
        "before the first step (default); adapter-off = the model with LoRA disabled, at every step",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--adapter-only", action="store_true", help="save the LoRA adapter instead of a merged model"
    )
    out.add_argument(
        "--dry-run", action="store_true", help="print the data set and stop: no training, no writing"
    )
    out.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    p.set_defaults(handler=_cmd_unlearn)


def _cmd_unlearn(args: argparse.Namespace) -> int:
    from siu.unlearn.run import UnlearnConfig, unlearn

    if args.image is None and args.bench is None:
        raise SiuError("give the forget image with --image or a benchmark with --bench")
    counts = tuple(args.counts) if args.counts is not None else None
    if counts is not None and len(counts) != 4:
        raise SiuError(f"--counts needs four numbers (targets 1,2,3,4), got {len(counts)}")
    cfg = UnlearnConfig(
        method=args.method,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        warmup_ratio=args.warmup_ratio,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        full_scope=args.full_scope,
        alpha=args.alpha,
        beta=args.beta,
        use_token_mask=not args.no_token_mask,
        use_vocab_mask=not args.no_vocab_mask,
        targets=args.targets if args.targets is not None else (1, 2, 3, 4),
        counts=counts,
        identities=args.identities,
        views=args.views,
        view_background=args.view_background,
        seed=args.seed,
        kl_weight=args.kl_weight,
        reference=args.reference.replace("-", "_"),
        overrides=args.overrides,
        profile=args.profile,
    )
    _quiet_transformers()
    unlearn(
        args.model,
        args.concept,
        args.image,
        args.bench,
        cfg,
        args.out,
        overwrite=args.overwrite,
        adapter_only=args.adapter_only,
        dry_run=args.dry_run,
    )
    return 0


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
