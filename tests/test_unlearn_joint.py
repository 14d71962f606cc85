"""Joint unlearning: several concepts forgotten in one run, one forget image each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from instance_figures import CONCEPT, quiet, second_concept

from siu.bench.load import load_benchmark
from siu.bench.match import mentions
from siu.cli import main
from siu.errors import SiuError
from siu.eval.forgetting import concept_scores, recognition_probes
from siu.models.adapter import VLM
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import build_joint_data, unlearn


def test_joint_data_never_retains_a_forgotten_concept_and_names_no_identity_twice(
    micro_world: tuple[Path, Path],
) -> None:
    world, model = micro_world
    bench = load_benchmark(world)
    first, second = bench.concept(CONCEPT), bench.concept(second_concept(world))
    cfg, _ = UnlearnConfig().resolved("llava", 1_000_000)
    images = [bench.load_image(c, c.forget_image) for c in (first, second)]
    samples = build_joint_data(cfg, [first, second], images, bench, None, VLM.load(model))
    forgotten = [*first.names, *second.names]
    # target 4 (other concepts' facts) and the retain pictures are never about either concept
    assert not [
        s for s in samples if s.target in (4, 5) and mentions(s.sample.prompt + s.sample.answer, forgotten)
    ]
    assert {s.target for s in samples} >= {1, 2, 3, 4}
    # each concept's image samples carry its own picture's data: half the target-1 samples each
    names = [s.sample.target_phrase for s in samples if s.target == 1]
    assert len(names) == 2 * cfg.counts[0]
    own = names[: cfg.counts[0]], names[cfg.counts[0] :]
    words = [{w for n in group for w in str(n).split()} for group in own]
    assert not words[0] & words[1]  # no made-up name (nor a word of one) given to both


def test_two_concepts_forgotten_jointly_and_the_others_kept(
    micro_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    bench = load_benchmark(world)
    second = second_concept(world)
    gone = [CONCEPT, second]
    out = tmp_path / "both"
    assert main(["unlearn", "--model", str(model), "--bench", str(world), "--concept", f"{CONCEPT},{second}",
                 "--out", str(out)]) == 0  # fmt: skip
    run = json.loads((out / "run.json").read_text())
    assert [c["slug"] for c in run["concepts"]] == gone and len(run["images"]) == 2
    assert run["config"]["batch_size"] == 64  # the tiny profile's 32 per concept
    pieces = "".join(run["vocab_mask_pieces"]).casefold().replace(" ", "")
    assert all(bench.concept(s).name.split()[0].casefold()[:3] in pieces for s in gone)
    # the rule watched both: two concepts' check questions, only the kept ones as "others"
    assert run["stopping"]["other_concepts_checked"] == len(bench.concepts) - 2
    probes = recognition_probes(bench, 8)
    before, _ = concept_scores(VLM.load(model), probes)
    after, _ = concept_scores(VLM.load(out), probes)
    for slug in gone:
        assert after[slug]["recognition"] <= 0.5 * before[slug]["recognition"], (
            slug,
            after[slug],
            before[slug],
        )
    kept = [k for k in after if k not in gone]
    assert len(kept) == len(bench.concepts) - 2
    assert sum(after[k]["recognition"] for k in kept) >= 0.75 * sum(before[k]["recognition"] for k in kept)


def test_joint_inputs_are_checked_before_any_model_is_loaded(
    micro_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    cfg = UnlearnConfig(steps=1)
    with pytest.raises(SiuError, match="named twice"):
        unlearn(model, [CONCEPT, CONCEPT], None, world, cfg, tmp_path / "a", log=quiet)
    with pytest.raises(SiuError, match="need 2 forget images"):
        unlearn(
            model, [CONCEPT, second_concept(world)], [world / "x.png"], world, cfg, tmp_path / "b", log=quiet
        )


def test_made_up_names_share_words_across_concepts_only_when_the_banks_run_out(
    micro_world: tuple[Path, Path],
) -> None:
    from siu.names import FIRST_NAMES, LAST_NAMES
    from siu.unlearn.made_up_names import choose_fictitious_names
    from siu.unlearn.samples import DataConfig, word_set

    world, _ = micro_world
    bench = load_benchmark(world)
    concept = bench.concept(CONCEPT)
    pairs = [f"{f} {last}" for f, last in zip(FIRST_NAMES, LAST_NAMES, strict=False)]
    some = DataConfig(identities=3, taken_names=tuple(pairs[:10]))  # a joint run's first few concepts
    names = choose_fictitious_names(concept, bench, some)
    assert len(names) == 3 and not word_set(names) & word_set(some.taken_names)
    every = DataConfig(identities=3, taken_names=tuple(pairs))  # every word of a bank taken (24 concepts)
    names = choose_fictitious_names(concept, bench, every)
    assert len(set(names)) == 3 and not {n.casefold() for n in names} & {t.casefold() for t in pairs}
