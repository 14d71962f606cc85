"""Acceptance table of the unlearning issue: every method on every concept of a synthetic world.

For each method (every registered method and named variant, e.g. SIU without each mask) and each
concept: unlearn the concept from its one forget image with the profile's defaults, then measure on
held-out images
  forget      recognition of the forgotten concept               (goal <= 0.05)
  others      the other concepts' recognition / the original's   (goal >= 0.95)
  facts       text facts about the forgotten concept answered    (goal >= 0.90)
and print the means over concepts (and how many concepts met all three goals). A run that keeps the
others below the goal also prints which of them lost held-out pictures (every run's list, before and
after: ``others_fell`` in --json).

    python scripts/unlearn_acceptance.py                      # default world, cached model ($SIU_HOME)
    python scripts/unlearn_acceptance.py --micro --methods siu,siu_no_vocab_mask --concepts tesquo-velrix
    python scripts/unlearn_acceptance.py --methods siu --world-seed 1 --lr 7e-4  # another world
    python scripts/unlearn_acceptance.py --methods npo --lr 3e-4 --set retain_weight=2  # a sweep point
    python scripts/unlearn_acceptance.py --methods siu,rmu --butterfly  # + the butterfly effect
    python scripts/unlearn_acceptance.py --methods siu --profile views=1 --profile identities=1  # ablation

With --butterfly, also the butterfly effect on the world's pair pictures (siu.eval.butterfly): the
share of pictures of C beside a kept partner B in which B is still named ("beside"), the same question
on B's own pictures ("alone"), for the unlearned model, the original and, where one is cached, C's
gold retain model (never saw C: what "unaffected" means).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from siu.bench.load import load_benchmark
from siu.errors import SiuError
from siu.eval.butterfly import butterfly_figures, butterfly_probes
from siu.eval.forgetting import (
    FACTS_MIN,
    FORGET_MAX,
    OTHERS_MIN_RELATIVE,
    concept_scores,
    fell_text,
    forgetting_summary,
    others_fell,
    recognition_probes,
)
from siu.models.adapter import VLM
from siu.tables import format_table
from siu.unlearn.config import PROFILE_FIELDS, UnlearnConfig
from siu.unlearn.methods import variants
from siu.unlearn.run import unlearn
from siu.world.cache import cached_retain_model, default_home, ensure_world_and_model

VARIANTS = variants()  # the same names as siu bench run: every registered method and named variant


def mean_of(runs: list[dict[str, Any]], model: str, key: str) -> float:
    """Mean over runs of one butterfly figure of one model (``unlearned``, ``original``, ``retain``)."""
    return sum(r["butterfly"][model][key] for r in runs) / len(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--micro", action="store_true", help="the micro world (4 concepts) instead of the default"
    )
    ap.add_argument("--methods", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--concepts", default="all", help="'all' or a comma list of concept slugs")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the profile's)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the profile's)")
    ap.add_argument("--seed", type=int, default=0, help="unlearning seed")
    ap.add_argument(
        "--world-seed", type=int, default=0, help="which synthetic world (built and pre-trained if missing)"
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=None,
        help="this pre-trained model of the world instead of the cached one (which a code change "
        "would re-pretrain: another instance)",
    )
    ap.add_argument(
        "--world",
        type=Path,
        default=None,
        help="with --model: the world directory it was pre-trained on (default: the cached world of "
        "--world-seed)",
    )
    ap.add_argument(
        "--stop",
        choices=("auto", "watch", "never"),
        default=None,
        help="the stopping rule (default: the method's; --steps is then the cap)",
    )
    ap.add_argument(
        "--others-pictures",
        type=int,
        default=None,
        metavar="N",
        help="SIU's data: N other concepts named on their own forget images (default: the profile's)",
    )
    ap.add_argument("--images", type=int, default=8, help="held-out recognition questions per concept")
    ap.add_argument(
        "--butterfly", action="store_true", help="also the butterfly effect on the world's pair pictures"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="a method option for every method run (e.g. --set npo_beta=0.2 --set retain_weight=2); "
        "the value is read as YAML (numbers, true/false)",
    )
    ap.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a profile field for every run, as siu unlearn's flag of that name (views, identities, "
        "counts, view_background, batch_size, ...; e.g. --profile views=1 --profile counts=[9,2,7,7]); "
        "read as YAML",
    )
    ap.add_argument(
        "--stop-rule",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="a setting of the stopping rule for every run (as siu unlearn --stop-rule; e.g. patience=2)",
    )
    args = ap.parse_args(argv)

    def settings(items: list[str], flag: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                ap.error(f"{flag} wants KEY=VALUE, got {item!r}")
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        return out

    extra, stop_rule = settings(args.set, "--set"), settings(args.stop_rule, "--stop-rule")
    profile = settings(args.profile, "--profile")
    own_flags = ("steps", "lr", "stop", "others_pictures")
    allowed = [f for f in PROFILE_FIELDS if f not in own_flags]
    if set(profile) - set(allowed):
        ap.error(
            f"--profile takes {', '.join(allowed)} ({', '.join(own_flags)} have flags of their own); "
            f"got {', '.join(sorted(set(profile) - set(allowed)))}"
        )
    if isinstance(profile.get("counts"), list):
        profile["counts"] = tuple(profile["counts"])
    try:  # before any model is loaded
        UnlearnConfig(
            stop=args.stop, stop_rule=stop_rule, others_pictures=args.others_pictures, **profile
        ).check()
    except (SiuError, TypeError) as e:
        ap.error(str(e))

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in VARIANTS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; known: {', '.join(VARIANTS)}")
    if args.model is not None:
        world = args.world or (
            default_home() / "worlds" / f"{'micro' if args.micro else 'default'}-seed{args.world_seed}"
        )
        model = args.model
    else:
        world, model, _ = ensure_world_and_model(micro=args.micro, seed=args.world_seed)
    bench = load_benchmark(world)
    slugs = [c.slug for c in bench.concepts] if args.concepts == "all" else args.concepts.split(",")
    for slug in slugs:
        bench.concept(slug)  # a clear error for a typo, before any work

    if args.butterfly and not bench.pairs:
        ap.error(f"{world} has no pair pictures (pairs.json); `siu demo` draws them into a cached world")
    probes = recognition_probes(bench, args.images)
    original = VLM.load(model)
    before, _ = concept_scores(original, probes)

    def butterfly(vlm: VLM, slug: str) -> dict[str, Any]:
        pr = butterfly_probes(bench, bench.concept(slug))
        figures = butterfly_figures(pr, vlm.generate(pr.samples, max_new_tokens=24, batch_size=64))
        return {k: figures[k] for k in ("pictures", "pair", "alone", "forgotten_in_pair", "partners")}

    references: dict[str, dict[str, Any]] = {}
    if args.butterfly:
        for slug in slugs:
            references[slug] = {"original": butterfly(original, slug)}
            retain = cached_retain_model(world, model, slug, default_home())
            if retain is not None:
                references[slug]["retain"] = butterfly(VLM.load(retain), slug)
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for variant in methods:
            for k, slug in enumerate(slugs):
                out = Path(tmp) / f"{variant}-{slug}"
                name, options = VARIANTS[variant]
                cfg = UnlearnConfig(
                    method=name,
                    options={**options, **extra},
                    steps=args.steps,
                    lr=args.lr,
                    seed=args.seed,
                    stop=args.stop,
                    stop_rule=stop_rule,
                    others_pictures=args.others_pictures,
                    **profile,
                )
                run = unlearn(model, slug, None, world, cfg, out, progress=False, log=lambda *_: None)
                unlearned = VLM.load(out)
                after, _ = concept_scores(unlearned, probes)
                summary = forgetting_summary(before, after, slug)
                summary["others_fell"] = others_fell(before, after, slug)
                if args.butterfly:
                    summary["butterfly"] = {"unlearned": butterfly(unlearned, slug), **references[slug]}
                runs.append(
                    {
                        "variant": variant,
                        "steps": run["config"]["steps"],
                        "steps_taken": run["steps_taken"],
                        "stop": run["config"]["stop"],
                        "stop_reason": run["stopping"]["reason"] if run["stopping"] else None,
                        "lr": run["config"]["lr"],
                        "options": extra,
                        "stop_rule": run["config"]["stop_rule"],
                        "others_pictures": run["config"]["others_pictures"],
                        "profile": {k: run["config"][k] for k in profile},
                        **summary,
                    }
                )
                print(
                    f"[{variant} {k + 1}/{len(slugs)}] {slug}: forget {summary['forget_recognition']:.2f} "
                    f"others {summary['others_relative']:.2f} facts {summary['facts']:.2f} "
                    f"steps {run['steps_taken']} "
                    + (
                        f"partner beside C {summary['butterfly']['unlearned']['pair']:.2f} "
                        f"(original {summary['butterfly']['original']['pair']:.2f}) alone "
                        f"{summary['butterfly']['unlearned']['alone']:.2f} "
                        if args.butterfly
                        else ""
                    )
                    + f"({time.perf_counter() - start:.0f} s)"
                    + (
                        "\n    others fell: " + fell_text(summary["others_fell"])
                        if summary["others_relative"] < OTHERS_MIN_RELATIVE
                        else ""
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    rows = []
    for variant in methods:
        mine = [r for r in runs if r["variant"] == variant]

        def mean(key: str, rs: list[dict[str, Any]] = mine) -> float:
            return sum(r[key] for r in rs) / len(rs)

        rows.append(
            [
                variant,
                mine[0]["stop"],
                mine[0]["steps"],
                f"{mean('steps_taken'):.1f}",
                f"{mine[0]['lr']:g}",
                f"{mean('forget_recognition'):.3f}",
                f"{mean('others_relative'):.3f}",
                f"{mean('facts'):.3f}",
                f"{sum(r['passed'] for r in mine)}/{len(mine)}",
                *(
                    [
                        f"{mean_of(mine, 'unlearned', 'pair'):.3f}",
                        f"{mean_of(mine, 'unlearned', 'alone'):.3f}",
                        f"{mean_of(mine, 'unlearned', 'forgotten_in_pair'):.3f}",
                    ]
                    if args.butterfly
                    else []
                ),  # fmt: skip
            ]
        )
    print(
        f"{'micro' if args.micro else 'default'} world (seed {args.world_seed}), {len(slugs)} concept(s), "
        f"unlearning seed {args.seed}; means over "
        f"concepts. Goals: forget <= {FORGET_MAX}, others >= {OTHERS_MIN_RELATIVE} of the original, "
        f"facts >= {FACTS_MIN}. Original model: recognition "
        f"{sum(before[s]['recognition'] for s in slugs) / len(slugs):.3f}, facts "
        f"{sum(before[s]['facts'] for s in slugs) / len(slugs):.3f}."
    )
    header = ["method", "stop", "step cap", "steps taken", "lr", "forget", "others", "facts", "all three met"]
    if args.butterfly:
        header += ["partner beside C", "partner alone", "C named beside partner"]
        firsts = [next(r for r in runs if r["concept"] == slug) for slug in slugs]
        for model_name in ("original", "retain"):
            have = [r for r in firsts if model_name in r["butterfly"]]
            if have:
                rows.append(
                    [f"({model_name}{'' if len(have) == len(firsts) else f', {len(have)} concepts'})",
                     *[""] * 8, *[f"{mean_of(have, model_name, k):.3f}" for k in ("pair", "alone", "forgotten_in_pair")]]
                )  # fmt: skip
    print(format_table(header, rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"before": before, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
