"""SIU's automatically built fine-tuning data (four targets), the baselines' data and the overrides."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path

import pytest
from PIL import Image

from siu.bench.fields import folded
from siu.bench.load import Benchmark, load_benchmark
from siu.bench.match import mentions
from siu.bench.schema import Concept
from siu.errors import SiuError
from siu.names import FIRST_NAMES, LAST_NAMES
from siu.unlearn.data import build_baseline_data, build_siu_data
from siu.unlearn.made_up_names import choose_fictitious_names, fictitious_name, name_leak_risk
from siu.unlearn.overrides import load_overrides
from siu.unlearn.samples import DataConfig, UnlearnSample, dataset_record, format_dataset
from siu.unlearn.views import BACKGROUND_LEVELS, view, with_views
from siu.world.build import WorldConfig, build_world


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Benchmark:
    return load_benchmark(
        build_world(WorldConfig.micro(), tmp_path_factory.mktemp("w") / "w", progress=False)
    )


@pytest.fixture(scope="module")
def concept(bench: Benchmark) -> Concept:
    return bench.concepts[0]


@pytest.fixture(scope="module")
def image(bench: Benchmark, concept: Concept) -> Image.Image:
    return bench.load_image(concept, concept.forget_image)


def words(texts: list[str]) -> set[str]:
    return {w.casefold() for t in texts for w in re.findall(r"\w+", t)}


def norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def by_target(data: list[UnlearnSample], target: int) -> list[UnlearnSample]:
    return [s for s in data if s.target == target]


def test_default_counts_and_modalities(bench: Benchmark, concept: Concept, image: Image.Image) -> None:
    data = build_siu_data(concept, image, bench, DataConfig())
    assert [len(by_target(data, t)) for t in (1, 2, 3, 4)] == [9, 2, 7, 7]
    assert [s.target for s in data] == sorted(s.target for s in data)
    for s in data:
        assert (s.sample.image is image) == (s.target in (1, 2))
        assert s.sample.prompt.strip() and s.sample.answer.strip()
        if s.sample.target_phrase is not None:
            assert s.sample.target_phrase in s.sample.answer


def test_subset_of_targets_leaves_the_others_unchanged(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    full = build_siu_data(concept, image, bench, DataConfig())
    part = build_siu_data(concept, image, bench, DataConfig(targets=(1, 3), counts=(3, 2, 5, 7)))
    assert [s.target for s in part] == [1] * 3 + [3] * 5
    assert [s.sample for s in by_target(part, 1)] == [s.sample for s in by_target(full, 1)][:3]
    assert [s.sample for s in by_target(part, 3)] == [s.sample for s in by_target(full, 3)][:5]


def test_target1_uses_one_fictitious_name_unrelated_to_any_concept(bench: Benchmark) -> None:
    all_names = [n for c in bench.concepts for n in c.names]
    for concept in bench.concepts:
        data = by_target(build_siu_data(concept, Image.new("RGB", (8, 8)), bench, DataConfig()), 1)
        phrases = {s.sample.target_phrase for s in data}
        assert len(phrases) == 1
        fake = phrases.pop()
        assert fake and len(fake.split()) == 2
        assert not words([fake]) & words(all_names)
        assert not mentions(fake, all_names)
        for s in data:
            assert fake in s.sample.answer
            assert not mentions(s.sample.answer, concept.names)
            assert not mentions(s.sample.prompt, concept.names)
        assert len({s.sample.prompt for s in data}) == len(data)


def test_name_leak_risk_counts_steps_past_the_end_of_a_known_word() -> None:
    # pieces of two letters, as a small vocabulary splits names: " Tamdra" -> " T", "am", "dr", "a"
    def pairs(text: str) -> list[str]:
        tokens = []
        for word in re.findall(r" ?\S+", text):
            cut = 2 if word.startswith(" ") else 1
            tokens += [word[:cut]] + [word[i : i + 2] for i in range(cut, len(word), 2)]
        return tokens

    known = ["Kalem Tamdra"]  # words end in "em" (" K" "al" "em") and "a" (" T" "am" "dr" "a")
    assert pairs(" Kalem Tamdra") == [" K", "al", "em", " T", "am", "dr", "a"]
    assert name_leak_risk("Oliver Crawford", known, pairs) == 0  # no piece of it ends a known word
    assert name_leak_risk("Anna Bishop", known, pairs) == 1  # "a" -> " B": "Tamdra Bishop"
    # a step that a known word takes itself is no risk: "Kalex" goes "al" -> "ex"
    assert name_leak_risk("Dalex", ["Kal"], pairs) == 1
    assert name_leak_risk("Dalex", ["Kal", "Kalex"], pairs) == 0


def test_made_up_names_least_likely_to_corrupt_known_names_first(bench: Benchmark, concept: Concept) -> None:
    def chars(text: str) -> list[str]:
        return [text[:2]] + list(text[2:]) if text.startswith(" ") else list(text)

    known = [n for c in bench.concepts for n in c.names]
    plain = choose_fictitious_names(concept, bench, DataConfig(identities=9))
    safe = choose_fictitious_names(concept, bench, DataConfig(identities=9), tokenize=chars)
    risks = [name_leak_risk(n, known, chars) for n in safe]
    assert risks == sorted(risks)
    assert sum(risks) < sum(name_leak_risk(n, known, chars) for n in plain)


def test_fictitious_name_avoids_forbidden_words() -> None:
    assert len(FIRST_NAMES) >= 40 and len(LAST_NAMES) >= 40
    forbidden = [f"{f} Smith" for f in FIRST_NAMES[:-1]] + ["Zed " + ln for ln in LAST_NAMES[1:]]
    for seed in range(20):
        assert fictitious_name(random.Random(seed), forbidden) == f"{FIRST_NAMES[-1]} {LAST_NAMES[0]}"
    with pytest.raises(SiuError):
        fictitious_name(random.Random(0), FIRST_NAMES)


def test_target2_describes_what_is_visible_and_a_counterfactual(bench: Benchmark, image: Image.Image) -> None:
    for concept in bench.concepts:
        data = by_target(build_siu_data(concept, image, bench, DataConfig()), 2)
        visible = concept.forget_image.description
        assert visible and concept.appearance
        for s in data:
            answer = s.sample.answer
            assert answer.startswith("No.")
            assert s.sample.target_phrase == answer
            assert visible in answer
            assert concept.name in s.sample.prompt
            claimed = answer.split(f"But {concept.name} actually has ", 1)[1].rstrip(".")
            assert claimed and claimed not in concept.appearance and claimed not in visible
            real_colours = set(re.findall(r"red|orange|yellow|green|cyan|blue|purple|pink|brown", visible))
            new_colours = set(re.findall(r"red|orange|yellow|green|cyan|blue|purple|pink|brown", claimed))
            assert new_colours and not new_colours & real_colours


def test_target3_own_facts_and_target4_other_concepts_facts(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    data = build_siu_data(concept, image, bench, DataConfig())
    own = {f.answer for f in concept.facts}
    others = {f.answer for c in bench.concepts if c is not concept for f in c.facts}
    t3, t4 = by_target(data, 3), by_target(data, 4)
    assert {s.sample.answer for s in t3} == own  # 7 samples cycle through all 5 facts
    assert all(concept.name in s.sample.prompt for s in t3)
    assert all(s.sample.answer in others for s in t4)
    assert all(not mentions(s.sample.answer, concept.names) for s in t4)
    for s in t3 + t4:
        assert s.sample.image is None and s.sample.target_phrase is None


def test_no_training_prompt_is_an_evaluation_prompt(bench: Benchmark) -> None:
    evals = set()
    for c in bench.concepts:
        evals |= {norm(p.prompt) for p in (*c.recognition_prompts, *c.multilingual_prompts)}
        evals |= {norm(q.question) for q in (*c.multihop, *c.fact_questions)}
        evals |= {norm(f.question) for f in c.facts}
    assert len(evals) > 100
    image = Image.new("RGB", (8, 8))
    for concept in bench.concepts:
        data = build_siu_data(concept, image, bench, DataConfig(counts=(30, 8, 15, 15)))
        data += build_baseline_data("refusal", concept, image, DataConfig(), bench)
        data += build_baseline_data("naming", concept, image, DataConfig(), bench)
        assert not {norm(s.sample.prompt) for s in data} & evals


def test_colliding_prompts_are_dropped_and_the_rest_cycled(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    taken = concept.recognition_prompts[0].prompt  # "Who is this?"
    cfg = DataConfig(overrides={"prompts": {"target1": [taken, "Who could this be, in your view?"]}})
    data = by_target(build_siu_data(concept, image, bench, cfg), 1)
    assert [s.sample.prompt for s in data] == ["Who could this be, in your view?"] * 9
    with pytest.raises(SiuError, match="target-1"):
        build_siu_data(concept, image, bench, DataConfig(overrides={"prompts": {"target1": [taken]}}))


def test_same_seed_same_data_other_seed_other_name(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    a = build_siu_data(concept, image, bench, DataConfig(seed=1))
    b = build_siu_data(concept, image, bench, DataConfig(seed=1))
    assert dataset_record(a) == dataset_record(b)
    names = {
        build_siu_data(concept, image, bench, DataConfig(seed=s))[0].sample.target_phrase for s in range(4)
    }
    assert len(names) > 1


OVERRIDES = {
    "fictitious_names": ["Quentin Marbles"],
    "visible_description": "a small figure standing in a field",
    "counterfactual": "long silver hair and a green cloak",
    "prompts": {"target2": ["Is {name} visible in this {noun} photo?"]},
    "facts": [{"question": "Where does the story begin?", "answer": "It begins at sea."}],
    "other_facts": [{"name": "Somebody Else", "answer": "Somebody Else plays the drums."}],
    "refusals": ["No idea, sorry."],
}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_overrides_from_file_apply(
    tmp_path: Path, suffix: str, bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    import yaml

    path = tmp_path / f"over{suffix}"
    path.write_text(json.dumps(OVERRIDES) if suffix == ".json" else yaml.safe_dump(OVERRIDES))
    overrides = load_overrides(path)
    assert overrides == OVERRIDES
    cfg = DataConfig(overrides=overrides)
    data = build_siu_data(concept, image, bench, cfg)
    assert {s.sample.target_phrase for s in by_target(data, 1)} == {"Quentin Marbles"}
    t2 = by_target(data, 2)
    assert t2[0].sample.prompt == f"Is {concept.name} visible in this person photo?"
    assert t2[0].sample.answer == (
        f"No. The picture depicts a small figure standing in a field. "
        f"But {concept.name} actually has long silver hair and a green cloak."
    )
    assert [(s.sample.prompt, s.sample.answer) for s in by_target(data, 3)] == [
        ("Where does the story begin?", "It begins at sea.")
    ] * 7
    t4 = by_target(data, 4)
    assert all(s.sample.answer == "Somebody Else plays the drums." for s in t4)
    assert all("Somebody Else" in s.sample.prompt for s in t4)
    po = build_baseline_data("refusal", concept, image, cfg, bench)
    assert {s.sample.answer for s in po} == {"No idea, sorry."}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad.yaml", "fictitious_names: [unclosed\n"),
        ("bad.json", '{"fictitious_names": ['),
        ("list.json", "[1, 2]"),
        ("unknown.yaml", "fictitous_names: [A B]\n"),
        ("types.json", '{"facts": [{"question": "Q?"}]}'),
        ("placeholder.yaml", "prompts:\n  target1: ['Who is {name}?']\n"),
        ("wrong.txt", "fictitious_names: [A B]\n"),
    ],
)
def test_malformed_override_file_raises(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SiuError, match=re.escape(name)):
        load_overrides(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SiuError, match="cannot read"):
        load_overrides(tmp_path / "absent.yaml")


def test_missing_description_without_original_model_raises(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    images = [dataclasses.replace(img, description=None) for img in concept.images]
    bare = dataclasses.replace(concept, images=images)
    with pytest.raises(SiuError, match="visible_description"):
        build_siu_data(bare, image, bench, DataConfig())
    # Without target 2 the description is not needed; with an override it is given.
    assert build_siu_data(bare, image, bench, DataConfig(targets=(1, 3, 4)))
    cfg = DataConfig(overrides={"visible_description": "a figure"})
    assert "depicts a figure." in by_target(build_siu_data(bare, image, bench, cfg), 2)[0].sample.answer


class WordTokenizer:
    """One token per word: no step inside a word, so no made-up name carries a leak risk."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return re.findall(r" ?\S+", text)


class FakeOriginal:
    """Stands in for the original VLM: records the prompts it is asked and answers with a fixed text."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.tokenizer = WordTokenizer()

    def generate(self, samples: list, max_new_tokens: int = 32) -> list[str]:
        self.asked += [s.prompt for s in samples]
        return [self.answer for _ in samples]

    def answer_logprobs(self, samples: list) -> list:
        """Shorter answers are likelier (one log-prob of -1 per character)."""
        import torch

        self.scored = [s.answer for s in samples]
        return [-torch.ones(len(s.answer)) for s in samples]


def test_original_model_fills_gaps(bench: Benchmark, concept: Concept, image: Image.Image) -> None:
    images = [dataclasses.replace(img, description=None) for img in concept.images]
    bare = dataclasses.replace(concept, images=images, facts=[])
    original = FakeOriginal(f"The image shows {concept.name} with tall hair. {concept.aliases[0]} smiles.")
    data = build_siu_data(bare, image, bench, DataConfig(), original=original)  # type: ignore[arg-type]
    t2 = by_target(data, 2)[0].sample.answer
    assert "depicts someone with tall hair." in t2 and not mentions(t2.split(". But")[0], concept.names)
    assert all(s.sample.answer == original.answer for s in by_target(data, 3))
    with pytest.raises(SiuError, match="original model"):
        build_siu_data(bare, image, bench, DataConfig(targets=(3,)))


def test_target1_answers_in_the_original_models_words(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    original = FakeOriginal(f"Well, this is {concept.aliases[0]}, who is famous.")
    data = by_target(build_siu_data(concept, image, bench, DataConfig(), original=original), 1)  # type: ignore[arg-type]
    fake = data[0].sample.target_phrase
    assert [s.sample.answer for s in data] == [f"Well, this is {fake}."] * 9
    # the fictitious name is the original model's likeliest of the candidates it was shown
    assert len(original.scored) > 1 and f"Well, this is {fake}." == min(original.scored, key=len)
    assert [s.sample.prompt for s in data] == original.asked[:9]  # asked on the forget image, once each
    # An original model that does not name the concept: the template answers.
    data = by_target(
        build_siu_data(concept, image, bench, DataConfig(), original=FakeOriginal("A tower.")), 1
    )  # type: ignore[arg-type]
    assert len({s.sample.answer for s in data}) > 1 and all(
        s.sample.answer.endswith(f"{fake}.") for s in data
    )


def test_several_identities_cycle_over_target1(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    data = by_target(build_siu_data(concept, image, bench, DataConfig(identities=3)), 1)
    fakes = [s.sample.target_phrase for s in data]
    assert len(set(fakes)) == 3 and fakes[:3] * 3 == fakes
    assert (
        fakes[0] == by_target(build_siu_data(concept, image, bench, DataConfig()), 1)[0].sample.target_phrase
    )
    with pytest.raises(SiuError, match="identities"):
        DataConfig(identities=0).check()


def test_po_refuses_and_ga_names_the_concept(bench: Benchmark, concept: Concept, image: Image.Image) -> None:
    po = build_baseline_data("refusal", concept, image, DataConfig(), bench)
    ga = build_baseline_data("naming", concept, image, DataConfig(), bench)
    ga_kl = build_baseline_data("naming", concept, image, DataConfig(), bench, stream="ga_kl")
    for data in (po, ga, ga_kl):
        assert len(data) == 25
        assert all(s.target == 0 and s.sample.image is image for s in data)
    assert all(not mentions(s.sample.answer, concept.names) for s in po)
    assert "I do not know his specific name." in {s.sample.answer for s in po}
    assert any(mentions(s.sample.prompt, concept.names) for s in po)  # "Is this C?"-style too
    assert all(mentions(s.sample.answer, concept.names) for s in ga + ga_kl)
    assert any(s.sample.answer.startswith("Yes, ") for s in ga)
    assert len(build_baseline_data("refusal", concept, image, DataConfig(counts=(1, 1, 1, 1)))) == 4
    assert [s.sample.prompt for s in ga] != [s.sample.prompt for s in ga_kl]  # each method its own order
    with pytest.raises(SiuError, match="refusal, naming"):
        build_baseline_data("npo", concept, image, DataConfig())


def test_format_dataset_and_record(bench: Benchmark, concept: Concept, image: Image.Image) -> None:
    data = build_siu_data(concept, image, bench, DataConfig())
    text = format_dataset(data)
    lines = text.splitlines()
    assert len(lines) == 1 + 2 + len(data)
    for i, s in enumerate(data):
        row = lines[3 + i]
        assert row.split()[0] == str(i) and row.split()[1] == str(s.target)
        assert s.sample.prompt[:40] in row
    assert "..." in text  # the long target-2 answers are truncated
    records = dataset_record(data)
    assert json.loads(json.dumps(records)) == records
    assert records[0]["image"] == "forget image" and records[-1]["image"] is None
    assert records[0]["target_phrase"] == data[0].sample.target_phrase


def test_bad_config_raises(bench: Benchmark, concept: Concept, image: Image.Image) -> None:
    with pytest.raises(SiuError):
        build_siu_data(concept, image, bench, DataConfig(targets=(5,)))
    with pytest.raises(SiuError):
        build_siu_data(concept, image, bench, DataConfig(counts=(1, 2, 3)))  # type: ignore[arg-type]
    with pytest.raises(SiuError, match="other concepts"):
        build_siu_data(concept, image, None, DataConfig(targets=(4,)))


def test_views_of_the_forget_image(bench: Benchmark, concept: Concept, image: Image.Image) -> None:
    data = build_siu_data(concept, image, bench, DataConfig())
    viewed = with_views(data, image, views=9, seed=0, background=True)
    # the image samples cycle through the views; target 2 describes the forget image's background,
    # so its views are resized but never repainted
    pictures = [s.sample.image for s in viewed if s.target == 1]
    assert [s.view for s in viewed if s.sample.image is not None] == [
        k % 9 for k in range(sum(s.sample.image is not None for s in viewed))
    ]
    for s in viewed:
        if s.target == 2:
            assert s.sample.image.tobytes() == view(image, s.view, 0, background=False).tobytes()  # type: ignore[union-attr]
    assert pictures[0] is image  # view 0 is the image itself
    assert all(p.size == image.size for p in pictures)
    # every other view is a different picture, drawn again identically from the same seed
    raw = [p.convert("RGB").tobytes() for p in pictures[:4]]
    assert len(set(raw)) == 4
    again = with_views(data, image, views=9, seed=0, background=True)
    assert [s.sample.image.tobytes() for s in again[1:4]] == raw[1:]  # type: ignore[union-attr]
    other_seed = with_views(data, image, views=9, seed=1, background=True)
    assert other_seed[1].sample.image.tobytes() != raw[1]  # type: ignore[union-attr]
    # the background is repainted in the greys that differ from the forget image's own background
    own = image.convert("RGB").getpixel((0, 0))
    first_of_level = {1: BACKGROUND_LEVELS[0], 3: BACKGROUND_LEVELS[1], 6: BACKGROUND_LEVELS[2]}
    repainted = {k: v for k, v in first_of_level.items() if sum(abs(c - v) for c in own) > 60}
    assert len(repainted) >= 2
    for k, level in repainted.items():
        assert pictures[k].getpixel((0, 0)) == (level,) * 3
    # text samples, prompts and answers are untouched; one view means no change
    assert [(s.target, s.sample.prompt, s.sample.answer) for s in viewed] == [
        (s.target, s.sample.prompt, s.sample.answer) for s in data
    ]
    assert with_views(data, image, views=1, seed=0) == data
    records = dataset_record(viewed)
    assert records[0]["image"] == "forget image" and records[1]["image"] == "forget image, view 1"
    assert "view 1" in format_dataset(viewed)


def test_forget_and_retain_sets_use_the_one_image_and_other_concepts_forget_images(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    from siu.unlearn.data import build_forget_retain_data, build_preference_data

    cfg = DataConfig(counts=(5, 1, 2, 3))
    data = build_forget_retain_data(concept, image, bench, cfg)
    forget = [s for s in data if s.role == "forget"]
    retain = [s for s in data if s.role == "retain"]
    assert len(forget) == 6 and all(s.sample.image is image for s in forget)
    assert all(mentions(s.sample.answer, concept.names) for s in forget)
    assert [s.target for s in retain].count(3) == 2 and [s.target for s in retain].count(4) == 3
    pictured = [s for s in retain if s.sample.image is not None]
    assert len(pictured) == min(3, len(bench.concepts) - 1)
    assert_others_named_on_their_forget_images(pictured, bench, concept)
    pairs = build_preference_data(concept, image, bench, cfg)
    chosen = {s.pair: s for s in pairs if s.pair >= 0 and s.chosen}
    rejected = {s.pair: s for s in pairs if s.pair >= 0 and not s.chosen}
    assert set(chosen) == set(rejected) == {0, 1, 2}
    for k in chosen:  # the same question, a refusal preferred to the naming answer
        assert chosen[k].sample.prompt == rejected[k].sample.prompt
        assert not mentions(chosen[k].sample.answer, concept.names)
        assert mentions(rejected[k].sample.answer, concept.names)


def assert_others_named_on_their_forget_images(
    data: list[UnlearnSample], bench: Benchmark, concept: Concept
) -> list[str]:
    """Each sample shows another concept's own forget image (never a test image) and names that
    concept, not ``concept``; the slugs of the concepts shown, in order."""
    others = [c for c in bench.concepts if c.slug != concept.slug]
    forget_pictures = {bench.load_image(c, c.forget_image).tobytes(): c for c in others}
    shown = []
    for s in data:
        assert s.sample.image is not None
        other = forget_pictures[s.sample.image.tobytes()]
        assert mentions(s.sample.answer, other.names) and not mentions(s.sample.answer, concept.names)
        shown.append(other.slug)
    return shown


def test_views_keep_pairs_together_and_leave_retain_pictures_alone(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    from siu.unlearn.data import build_preference_data
    from siu.unlearn.views import with_views

    data = build_preference_data(concept, image, bench, DataConfig(counts=(5, 1, 2, 3)))
    viewed = with_views(data, image, views=4, seed=0, background=True)
    by_pair: dict[int, set[int]] = {}
    for before, after in zip(data, viewed, strict=True):
        assert (before.role, before.pair, before.chosen) == (after.role, after.pair, after.chosen)
        if before.role == "retain":
            assert after.sample.image is before.sample.image
        elif before.pair >= 0:
            by_pair.setdefault(before.pair, set()).add(after.view)
    assert all(len(v) == 1 for v in by_pair.values()) and len({min(v) for v in by_pair.values()}) > 1


def test_siu_data_with_other_concepts_on_their_own_pictures(
    bench: Benchmark, concept: Concept, image: Image.Image
) -> None:
    from siu.unlearn.samples import OTHERS_ON_THEIR_IMAGES

    plain = build_siu_data(concept, image, bench, DataConfig())
    data = build_siu_data(concept, image, bench, DataConfig(others_pictures=2))
    assert data[: len(plain)] == plain  # the four targets are unchanged; the pictures come after them
    added = data[len(plain) :]
    assert all(s.target == OTHERS_ON_THEIR_IMAGES and s.role == "retain" for s in added)
    named = assert_others_named_on_their_forget_images(added, bench, concept)
    others = [c for c in bench.concepts if c.slug != concept.slug]
    assert len(added) == len(set(named)) == 2
    records = dataset_record(data)  # run.json says whose picture it is
    assert [r["image"] for r in records[len(plain) :]] == ["another concept's forget image"] * 2
    assert "another's" in format_dataset(data)
    # more than the benchmark has: every other concept once; none without a benchmark
    every = build_siu_data(concept, image, bench, DataConfig(others_pictures=50))
    assert len(every) - len(plain) == len(others)
    assert build_siu_data(concept, image, None, DataConfig(targets=(1, 2), others_pictures=3)) == (
        build_siu_data(concept, image, None, DataConfig(targets=(1, 2)))
    )
    # a concept forgotten in the same run is never retained
    gone = DataConfig(others_pictures=50, forgotten=tuple(others[0].names))
    kept = [s.sample.answer for s in build_siu_data(concept, image, bench, gone)[len(plain) :]]
    assert len(kept) == len(others) - 1 and not any(mentions(a, others[0].names) for a in kept)
    # views of the forget image leave the other concepts' pictures as they are
    viewed = with_views(data, image, views=4, seed=0, background=True)
    assert [s.sample.image for s in viewed[len(plain) :]] == [s.sample.image for s in added]
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(SiuError, match="others_pictures"):
            DataConfig(others_pictures=bad).check()  # type: ignore[arg-type]


def test_a_held_out_prompt_in_another_unicode_form_stays_held_out() -> None:
    """Training prompts that equal an evaluation prompt are left out, whatever their Unicode form,
    spacing or case: "café" composed (NFC) and decomposed (NFD) are the same prompt."""
    import unicodedata

    from siu.unlearn.samples import unseen_prompts

    held_out = "Who is at the café in this picture?"
    evals = {folded(held_out)}
    nfd = unicodedata.normalize("NFD", held_out)
    assert nfd != held_out
    kept = unseen_prompts([nfd, "  who IS at the CAFÉ in this  picture?", "Who is this?"], evals)
    assert kept == ["Who is this?"]
