"""Pair pictures (two concepts side by side) and the butterfly effect measured on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from siu.bench.load import load_benchmark
from siu.bench.validate import validate_benchmark
from siu.eval.butterfly import ButterflyProbes, butterfly_figures, butterfly_probes
from siu.models.adapter import Sample
from siu.world.build import WorldConfig, add_missing_pairs, build_world
from siu.world.pretrain import PretrainConfig, cache_key
from siu.world.text import NOUNS


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(WorldConfig.micro(seed=0), tmp_path_factory.mktemp("pairs") / "world", progress=False)


def test_butterfly_figures_by_hand() -> None:
    def probe(targets: list[str]) -> tuple[Sample, str, list[str]]:
        return (Sample("q"), "img.png", targets)

    b, d, c = ["Bo Bel"], ["Di Dan"], ["Cy Cor"]
    probes = ButterflyProbes(
        in_pair=[probe(b), probe(b), probe(d)],
        alone=[probe(b), probe(b), probe(d)],
        partners=["bo", "bo", "di"],
        forgotten_in_pair=[probe(c), probe(c), probe(c)],
    )
    answers = [
        "This is Bo Bel.", "This is Cy Cor.", "This is Di Dan.",  # beside C: 2 of 3 partners named
        "This is Bo Bel.", "This is Bo Bel.", "Someone.",  # alone: 2 of 3
        "This is Cy Cor.", "No idea.", "This is Di Dan.",  # C named in 1 of 3
    ]  # fmt: skip
    seen: list[tuple[str, bool]] = []
    figures = butterfly_figures(probes, answers, lambda metric, _p, _a, hit: seen.append((metric, hit)))
    assert figures["pictures"] == 3
    assert figures["pair"] == pytest.approx(2 / 3) and figures["alone"] == pytest.approx(2 / 3)
    assert figures["forgotten_in_pair"] == pytest.approx(1 / 3)
    assert figures["partners"] == {
        "bo": {"pictures": 2, "pair": 0.5, "alone": 1.0},
        "di": {"pictures": 1, "pair": 1.0, "alone": 0.0},
    }
    assert len(seen) == 9 and seen[1] == ("butterfly_pair", False)


def test_the_world_draws_pairs_across_categories_that_validate(world: Path) -> None:
    bench = load_benchmark(world)
    assert bench.pairs and not [p for p in validate_benchmark(world) if p.severity == "error"]
    category = {c.slug: c.category for c in bench.concepts}
    orders = set()
    for item in bench.pairs:
        a, b = item.concepts
        assert category[a] != category[b]
        orders.add((a, b))
        for slug, prompt in zip(item.concepts, item.prompts, strict=True):
            assert NOUNS[category[slug]] in prompt  # each question names its concept's category
        assert Image.open(world / item.image).size == (64, 64)  # square: a centre crop keeps both
    assert {(b, a) for a, b in orders} == orders  # every pair drawn both ways round
    assert all(any(c.slug in p.concepts for p in bench.pairs) for c in bench.concepts)


def test_pairs_added_to_an_older_world_are_the_ones_a_build_draws_and_keep_its_models(
    world: Path, tmp_path: Path
) -> None:
    older = tmp_path / "older"
    shutil.copytree(world, older)
    shutil.rmtree(older / "pairs")
    (older / "pairs.json").unlink()
    key = cache_key(load_benchmark(older), PretrainConfig.micro(), None)
    (older / "pairs").mkdir()  # a killed earlier attempt: pictures without their list, a temp folder
    (older / "pairs" / "000-0.png").write_bytes(b"half")
    (older / ".pairs-killed").mkdir()
    assert add_missing_pairs(older) and not add_missing_pairs(older)
    for path in [world / "pairs.json", *sorted((world / "pairs").iterdir())]:
        assert (older / path.relative_to(world)).read_bytes() == path.read_bytes()
    assert not [p for p in older.iterdir() if p.name.startswith(".")]
    # evaluation-only pictures: the world's pre-trained models stay valid
    assert cache_key(load_benchmark(older), PretrainConfig.micro(), None) == key
    # never into a benchmark siu did not draw
    user = tmp_path / "user"
    shutil.copytree(older, user, ignore=shutil.ignore_patterns("pairs*"))
    manifest = json.loads((user / "manifest.json").read_text())
    manifest["generator"] = None
    (user / "manifest.json").write_text(json.dumps(manifest))
    assert not add_missing_pairs(user) and not (user / "pairs.json").exists()


def test_malformed_pairs_are_explained(world: Path, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(world, bench)
    data = json.loads((bench / "pairs.json").read_text())
    items = data["items"]
    items[0]["concepts"] = [items[0]["concepts"][0]] * 2
    items[1]["concepts"][0] = items[1]["concepts"][0][:-1]
    items[2]["prompts"] = ["Who?"]
    items[3]["image"] = "../outside.png"
    items[4]["image"] = "pairs/missing.png"
    (bench / "pairs.json").write_text(json.dumps(data))
    found = {p.field: p.message for p in validate_benchmark(bench) if p.file == "pairs.json"}
    assert "two different concept folder names" in found["items[0].concepts"]
    assert "did you mean" in found["items[1].concepts[0]"]
    assert "one question per concept" in found["items[2].prompts"]
    assert "escapes" in found["items[3].image"] and "not found" in found["items[4].image"]


def test_probes_ask_for_a_kept_partner_beside_c_and_alone(world: Path) -> None:
    bench = load_benchmark(world)
    concept = bench.concepts[1]
    probes = butterfly_probes(bench, concept)
    n = len(probes.in_pair)
    assert n > 0 and len(probes.alone) == len(probes.forgotten_in_pair) == len(probes.partners) == n
    for k in range(n):
        partner = bench.concept(probes.partners[k])
        assert probes.in_pair[k][2] == probes.alone[k][2] == partner.names
        assert (
            probes.in_pair[k][0].prompt == probes.alone[k][0].prompt
        )  # the same question, beside C and alone
        assert probes.in_pair[k][1].startswith("pairs/") and probes.alone[k][1] != partner.forget_image.file
        assert probes.forgotten_in_pair[k][2] == concept.names
    gone = probes.partners[0]
    fewer = butterfly_probes(bench, concept, forgotten=[gone])
    assert gone not in fewer.partners and len(fewer.in_pair) == n - probes.partners.count(gone)
