"""Sequential unlearning (requests one after another) and the evaluation of a forget set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from instance_figures import CONCEPT, quiet, second_concept

from siu.bench.load import load_benchmark
from siu.bench.match import mentions
from siu.cli import main
from siu.errors import ModelError, SiuError
from siu.eval.forgetting import concept_scores, recognition_probes
from siu.models.adapter import VLM
from siu.models.files import is_adapter_dir
from siu.sequence import unlearn_sequentially
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import build_joint_data


def test_a_later_request_never_retains_an_earlier_forgotten_concept(micro_world: tuple[Path, Path]) -> None:
    world, model = micro_world
    bench = load_benchmark(world)
    first, second = bench.concept(CONCEPT), bench.concept(second_concept(world))
    cfg, _ = UnlearnConfig().resolved("llava", 1_000_000)
    image = bench.load_image(second, second.forget_image)
    samples = build_joint_data(cfg, [second], [image], bench, None, VLM.load(model), earlier=[first])
    retained = [s for s in samples if s.target in (4, 5)]
    assert retained and not [s for s in retained if mentions(s.sample.prompt + s.sample.answer, first.names)]
    # without the earlier request, the first concept is among those retained (the check above can fail)
    alone = build_joint_data(cfg, [second], [image], bench, None, VLM.load(model))
    assert [
        s for s in alone if s.target in (4, 5) and mentions(s.sample.prompt + s.sample.answer, first.names)
    ]


def test_two_requests_forget_both_keep_the_rest_and_every_step_is_kept(
    micro_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    bench = load_benchmark(world)
    second = second_concept(world)
    out = tmp_path / "seq"
    args = ["unlearn", "--model", str(model), "--bench", str(world), "--concept", f"{CONCEPT},{second}"]
    assert main([*args, "--sequential", "--out", str(out)]) == 0
    first_dir, second_dir = out / f"01-{CONCEPT}", out / f"02-{second}"
    assert is_adapter_dir(first_dir) and is_adapter_dir(second_dir)  # adapters, each on the one before
    run = json.loads((second_dir / "run.json").read_text())
    assert run["forgotten_before"] == [bench.concept(CONCEPT).name]
    assert run["reference_model"] == str(model)  # the KL holds every request to the original
    first_run = json.loads((first_dir / "run.json").read_text())
    assert first_run["reference_model"] is None
    # that reference still names the first concept, so the second request's KL must leave its name out
    assert set(first_run["vocab_mask_pieces"]) <= set(run["vocab_mask_pieces"])
    assert set(run["vocab_mask_pieces"]) - set(first_run["vocab_mask_pieces"])  # and the second's own
    assert run["stopping"]["other_concepts_checked"] <= len(bench.concepts) - 2  # neither is "kept"
    seq = json.loads((out / "sequence.json").read_text())
    assert [r["dir"] for r in seq["requests"]] == [first_dir.name, second_dir.name]
    before = seq["before"]
    last = seq["requests"][-1]
    # the chain of adapters loads on its own, also after the whole output moved elsewhere
    moved = tmp_path / "moved"
    shutil.move(str(out), moved)
    after, _ = concept_scores(
        VLM.load(moved / second_dir.name), recognition_probes(bench, seq["check_images"])
    )
    assert after == last["after"]  # the check after the request is what the saved model does
    with pytest.raises(ModelError, match="leave out --base"):  # --base would drop request 1's adapter
        VLM.load(moved / second_dir.name, base=model)
    for slug in (CONCEPT, second):  # the second request forgot its concept, and the first stayed gone
        assert after[slug]["recognition"] <= 0.5 * before[slug]["recognition"], (slug, after, before)
    kept = [k for k in after if k not in (CONCEPT, second)]
    assert sum(after[k]["recognition"] for k in kept) >= 0.75 * sum(before[k]["recognition"] for k in kept)
    assert last["others_relative"] == pytest.approx(
        sum(after[k]["recognition"] for k in kept) / sum(before[k]["recognition"] for k in kept)
    )


def test_sequential_inputs_are_refused_clearly(
    micro_world: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    world, model = micro_world
    cfg = UnlearnConfig(steps=1)
    with pytest.raises(SiuError, match="at least two"):
        unlearn_sequentially(model, [CONCEPT], None, world, cfg, tmp_path / "a", log=quiet)
    with pytest.raises(SiuError, match="requested twice"):
        unlearn_sequentially(model, [CONCEPT, CONCEPT], None, world, cfg, tmp_path / "b", log=quiet)
    with pytest.raises(SiuError, match="need 2 forget images"):
        unlearn_sequentially(
            model, [CONCEPT, second_concept(world)], ["x.png"], world, cfg, tmp_path / "c", log=quiet
        )
    base = [
        "unlearn",
        "--model",
        str(model),
        "--bench",
        str(world),
        "--concept",
        f"{CONCEPT},{second_concept(world)}",
    ]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main([*base, "--sequential", "--overwrite", "--out", str(tmp_path / "full")]) == 2
    assert "new or empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert main([*base, "--sequential", "--dry-run"]) == 2


def test_eval_of_a_forget_set_reports_each_concept_and_the_mean(
    micro_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    bench = load_benchmark(world)
    second = second_concept(world)
    out = tmp_path / "ev"
    code = main(["eval", "--model", str(model), "--original", str(model), "--bench", str(world),
                 "--concept", f"{CONCEPT},{second}", "--test-images", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "forget-set.json").read_text())
    assert [c["slug"] for c in summary["concepts"]] == [CONCEPT, second]
    per = summary["metrics"]
    for key in ("efficacy_em", "fact_retention", "specificity"):
        values = [per[CONCEPT][key], per[second][key]]
        assert summary["mean"][key] == pytest.approx(sum(values) / 2), key
    assert per[CONCEPT]["specificity"] == pytest.approx(100.0)  # the original against itself
    for slug, other in ((CONCEPT, second), (second, CONCEPT)):
        metrics = json.loads((out / slug / "metrics.json").read_text())
        assert metrics["eval_config"]["forgotten"] == [other]
        # specificity is asked of the concepts kept: never of the other forgotten one's pictures
        answers = [json.loads(line) for line in (out / slug / "answers.jsonl").read_text().splitlines()]
        asked = [r for r in answers if r["metric"].startswith("specificity_recognition")]
        named = {t for r in asked for t in r["targets"]}
        assert asked and not set(bench.concept(other).names) & named
        kept = [c for c in bench.concepts if c.slug not in (CONCEPT, second)]
        assert all(c.name in named for c in kept)


def test_an_interrupted_sequence_resumes_with_its_finished_requests_kept(
    micro_world: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    world, model = micro_world
    second = second_concept(world)
    out = tmp_path / "seq"
    args = ["unlearn", "--model", str(model), "--bench", str(world), "--concept", f"{CONCEPT},{second}",
            "--sequential", "--steps", "1", "--stop", "never", "--check-images", "0", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    first = out / f"01-{CONCEPT}" / "adapter_model.safetensors"
    kept = first.read_bytes()
    shutil.rmtree(out / f"02-{second}")  # as if killed during the second request
    assert main(args) == 2  # the output is taken: nothing is touched without --resume
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert "finished before, kept" in capsys.readouterr().out and first.read_bytes() == kept  # request 1
    seq = json.loads((out / "sequence.json").read_text())
    assert [r["request"] for r in seq["requests"]] == [1, 2] and (out / f"02-{second}" / "run.json").is_file()
    # killed after request 2 trained, during its check: its model is kept and only checked
    seq["requests"] = seq["requests"][:1]
    (out / "sequence.json").write_text(json.dumps(seq))
    trained = (out / f"02-{second}" / "adapter_model.safetensors").read_bytes()
    assert main([*args, "--resume"]) == 0
    assert "trained before, kept" in capsys.readouterr().out
    assert (out / f"02-{second}" / "adapter_model.safetensors").read_bytes() == trained
    assert len(json.loads((out / "sequence.json").read_text())["requests"]) == 2
    # other settings, or nothing to resume: refused, nothing touched
    assert main([*args[:-2], "--lr", "1e-3", "--out", str(out), "--resume"]) == 2
    assert "other settings (config)" in capsys.readouterr().err
    assert main([*args[:-2], "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
