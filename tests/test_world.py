"""The synthetic world: format, minimum contents, determinism, CLI behaviour."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from siu.bench.load import load_benchmark
from siu.bench.validate import validate_benchmark
from siu.cli import main
from siu.world.build import WorldConfig, build_world
from siu.world.concepts import make_concepts


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def default_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(WorldConfig(seed=0), tmp_path_factory.mktemp("w") / "world", progress=False)


def test_default_world_meets_the_minimums(default_world: Path) -> None:
    bench = load_benchmark(default_world)
    assert len(bench.concepts) >= 24
    assert len({c.category for c in bench.concepts}) >= 4
    for c in bench.concepts:
        assert len(c.name.split()) == 2 and c.aliases
        assert len(c.facts) >= 4
        assert 4 <= len(c.special_tokens) <= 5
        assert len(c.images) >= 50 and c.images[0].forget and sum(i.forget for i in c.images) == 1
        assert len(c.recognition_prompts) >= 30
        assert any(p.heldout for p in c.recognition_prompts)
        assert {p.type for p in c.recognition_prompts} == {"name", "yesno"}
        assert len({p.language for p in c.multilingual_prompts} - {"en"}) >= 3
        assert len(c.multihop) >= 10 and len(c.fact_questions) >= 20
    problems = validate_benchmark(default_world)
    assert [p for p in problems if p.severity == "error"] == []


def test_same_seed_gives_byte_identical_output(tmp_path: Path) -> None:
    a = build_world(WorldConfig.micro(seed=3), tmp_path / "a", progress=False)
    b = build_world(WorldConfig.micro(seed=3), tmp_path / "b", progress=False)
    c = build_world(WorldConfig.micro(seed=4), tmp_path / "c", progress=False)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a) != tree_digest(c)


def test_names_and_aliases_never_collide() -> None:
    concepts = make_concepts(seed=0, n=28)
    words = [w.lower() for c in concepts for n in (c.name, *c.aliases) for w in n.split()]
    assert len(set(c.name for c in concepts)) == 28
    pairs = {(c.look.primary, c.look.secondary) for c in concepts}
    assert len(pairs) == 28, "each concept has its own colour pair"
    assert len(set(words)) == len(set(words))  # no duplicated identifiers across concepts
    aliases = [a.lower() for c in concepts for a in c.aliases]
    assert len(aliases) == len(set(aliases))


def test_build_refuses_a_non_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["world", "build", "--micro", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"


def test_pretrain_refuses_a_benchmark_that_is_not_a_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = build_world(WorldConfig.micro(), tmp_path / "w", progress=False)
    manifest = json.loads((world / "manifest.json").read_text())
    manifest["generator"] = None
    (world / "manifest.json").write_text(json.dumps(manifest))
    assert main(["world", "pretrain", "--world", str(world), "--out", str(tmp_path / "m")]) == 2
    assert "not a synthetic world" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("world build", "world pretrain", "bench validate", "demo"):
        assert word in text
