"""``siu bench run --forget-sets``: joint forget sets of growing size and a sequence, tabled and plotted."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from siu.bench.load import load_benchmark
from siu.cli import main
from siu.errors import SiuError
from siu.forget_sets import across_categories, parse_sizes


def test_sizes_and_the_order_across_categories() -> None:
    assert parse_sizes("8,1,all,2,1", 24) == [1, 2, 8, 24]
    for bad, why in (("0", "1 to 24"), ("25", "1 to 24"), ("two", "is not one"), (",", "at least one")):
        with pytest.raises(SiuError, match=why):
            parse_sizes(bad, 24)
    concepts = [SimpleNamespace(slug=s, category=c) for s, c in
                (("p1", "person"), ("p2", "person"), ("l1", "logo"), ("s1", "style"), ("l2", "logo"))]  # fmt: skip
    assert across_categories(concepts) == ["p1", "l1", "s1", "p2", "l2"]


def test_joint_sets_and_a_sequence_on_the_micro_world(micro_world: tuple[Path, Path], tmp_path: Path) -> None:
    world, model = micro_world
    out = tmp_path / "many"
    code = main(["bench", "run", "--world", str(world), "--model", str(model), "--methods", "siu",
                 "--forget-sets", "1,all", "--sequential", "--steps", "3", "--test-images", "2",
                 "--max-new-tokens", "16", "--check-images", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads((out / "forget-sets.json").read_text())
    bench = load_benchmark(world)
    order = across_categories(bench.concepts)
    assert result["order"] == order and result["sizes"] == [1, len(order)]
    one, every = result["joint"]
    assert one["concepts"] == order[:1] and every["concepts"] == order
    # the mean over the forget set is the mean of its concepts' own figures
    per = [v["generality_em"] for v in every["per_concept"].values()]
    assert every["mean"]["generality_em"] == pytest.approx(sum(per) / len(per))
    summary = json.loads((out / "joint" / f"siu-{len(order):02d}" / "forget-set.json").read_text())
    assert [c["slug"] for c in summary["concepts"]] == order
    alone = json.loads(
        (out / "joint" / "siu-01" / "metrics.json").read_text()
    )  # a set of one: siu eval's own
    assert one["mean"]["generality_em"] == alone["metrics"]["generality_em"]
    assert one["original_mean"]["generality_em"] == alone["original_values"]["generality_em"]
    assert (out / "joint" / "siu-01" / "adapter").is_dir() and (
        out / "joint" / "siu-01" / "run.json"
    ).is_file()
    # a set of one has kept partners for the butterfly effect; with every concept forgotten none is left
    first = order[0]
    assert isinstance(alone["metrics"]["butterfly_pair"], float)
    everything = json.loads((out / "joint" / f"siu-{len(order):02d}" / first / "metrics.json").read_text())
    assert everything["metrics"]["butterfly_pair"] is None
    assert "kept concept" in everything["details"]["missing"]["butterfly_pair"]
    # the original's side depends on the set: alone, its specificity asks the other concepts; with every
    # concept forgotten only the generic questions are left
    assert "specificity_recognition_original" in alone["details"]
    assert "specificity_recognition_original" not in everything["details"]
    (seq,) = result["sequential"]
    assert [r["concept"] for r in seq["requests"]] == [bench.concept(s).name for s in order]
    assert all("others_relative" in r for r in seq["requests"])
    assert (out / "sequential" / "siu" / "sequence.json").is_file()
    page = (out / "forget-sets.html").read_text()
    assert "forget_sets_joint.png" in page and "forget_sets_sequential.png" in page
    for stem in ("forget_sets_joint", "forget_sets_sequential"):
        assert all((out / "figures" / f"{stem}.{fmt}").is_file() for fmt in ("png", "pdf", "svg"))
    table = (out / "forget-sets.md").read_text()
    assert "Joint" in table and "Sequential (siu)" in table


def test_forget_set_options_are_checked(micro_world: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    world, model = micro_world
    base = ["bench", "run", "--world", str(world), "--model", str(model), "--methods", "siu"]
    assert main([*base, "--sequential", "--out", str(tmp_path / "a")]) == 2
    assert "--sequential belongs to --forget-sets" in capsys.readouterr().err
    assert main([*base, "--forget-sets", "1,2", "--steps", "3,6", "--out", str(tmp_path / "b")]) == 2
    assert "one --steps value" in capsys.readouterr().err
    assert main([*base, "--forget-sets", "9", "--out", str(tmp_path / "c")]) == 2
    assert "offers 1 to 4" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")


def test_a_set_of_one_has_the_cached_retain_model_as_reference(
    micro_world: tuple[Path, Path], micro_retain: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    home, retain = micro_retain
    out = tmp_path / "one"
    code = main(["bench", "run", "--world", str(world), "--model", str(model), "--methods", "siu",
                 "--forget-sets", "1", "--concepts", "tesquo-velrix", "--steps", "2", "--test-images", "4",
                 "--max-new-tokens", "16", "--home", str(home), "--out", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads((out / "forget-sets.json").read_text())
    reference = result["retain"]
    assert reference["path"] == str(retain) and reference["concepts"] == ["tesquo-velrix"]
    own = json.loads((out / "joint" / "retain-01" / "metrics.json").read_text())
    assert reference["mean"]["generality_em"] == own["metrics"]["generality_em"]
    # it never saw the concept: it names it far less often than the original does
    assert reference["mean"]["generality_em"] > reference["original_mean"]["generality_em"] + 50
    assert "gold retain model of tesquo-velrix" in (out / "forget-sets.md").read_text()
