"""``siu eval`` end to end on the micro world: every metric, traceable answers, clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from instance_figures import CONCEPT, check, evaluate, ga_figures, gradient_ascent, self_figures

from siu.cli import main
from siu.eval.metrics import METRICS


def _eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["eval", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def ga_model(micro_world: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    world, model = micro_world
    return gradient_ascent(world, model, tmp_path_factory.mktemp("ga") / "m")


def test_original_against_itself(micro_world: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    world, model = micro_world
    out = tmp_path / "ev"
    code, stdout, _ = _eval(
        capsys, "--model", str(model), "--original", str(model), "--bench", str(world), "--concept", CONCEPT,
        "--judge", "rubric", "--out", str(out),
    )  # fmt: skip
    assert code == 0, stdout
    result = json.loads((out / "metrics.json").read_text())
    m = result["metrics"]
    assert set(m) == set(METRICS) and set(result["directions"]) == set(METRICS)
    assert result["judge"] == "rubric"
    assert m["specificity"] == pytest.approx(100.0) and m["c_dis"] == pytest.approx(0.0, abs=1e-9)
    assert "mia_auc_retain" in result["details"]["missing"]
    # the original's own value beside every figure: against itself, the same figure
    original = result["original_values"]
    assert set(original) == set(METRICS) and result["original_recognises"] is True
    for key in ("efficacy_em", "generality_em", "g_eval", "fact_retention", "attack_relearn", "mia_auc_loss"):
        assert original[key] == pytest.approx(m[key]), key
    # what C-Dis and the MIAs were computed on, so that anyone can recompute them
    detail = result["details"]["c_dis_detail"]
    from siu.bench.load import load_benchmark

    n_tests = len(load_benchmark(world).concept(CONCEPT).test_images)
    assert detail["prompt"] and len(detail["images"]) == n_tests  # every test image by default
    assert detail["positions"] > 10 and all(t["mean_distance"] == 0.0 for t in detail["tokens"].values())
    details = result["details"]
    assert details["mia_kept"] == details["mia_answered_by_original"] > 0  # the same model: ratio 1
    assert result["details"]["answers_at_limit"] <= 0.1
    assert all(0.0 <= m[f"attack_{k}"] <= 1.0 for k in ("crop", "flip", "blur", "jpeg", "unseen_phrasing"))
    # the original names its concept (EM near 0, the judge agrees), keeps its facts, answers in other
    # languages and with unseen phrasings, tells C's pictures from others' (MIA), and 8-bit rounding
    # does not make it forget (benign fine-tuning on the micro world's three other concepts may: the
    # original's own figure under each attack is reported beside, for that)
    check(self_figures(result), "self.")
    reference = result["details"]["attack_original"]
    kinds = ("crop", "flip", "blur", "jpeg", "quant8", "quant4", "relearn")
    assert set(reference) == {f"attack_{k}" for k in kinds}
    for key in ("attack_quant8", "attack_relearn"):  # the same model twice: the same figure
        assert reference[key] == pytest.approx(m[key])
    assert len(result["details"]["attack_relearn_losses"]) >= 2
    records = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    kinds = {r["metric"] for r in records}
    assert {"efficacy_em", "generality_em", "g_eval", "fact_retention", "jailbreak_multihop"} <= kinds
    # the butterfly effect on the world's pair pictures: against itself, the original's figures
    assert 0.0 <= m["butterfly_pair"] <= 1.0 and m["butterfly_pair"] == pytest.approx(
        original["butterfly_pair"]
    )
    assert m["butterfly_alone"] == pytest.approx(original["butterfly_alone"])
    butterfly = result["details"]["butterfly"]
    assert butterfly["unlearned"] == butterfly["original"] and butterfly["unlearned"]["pictures"] > 0
    assert "butterfly_retain" in result["details"]["missing"]
    assert {"butterfly_pair", "butterfly_alone", "butterfly_forgotten_in_pair"} <= kinds
    assert "efficacy_em" in stdout and "missing" in stdout
    assert "<table>" in (out / "report.html").read_text()


def test_gradient_ascent_forgets_by_breaking_the_model(
    micro_world: tuple[Path, Path], ga_model: Path, tmp_path: Path
) -> None:
    world, model = micro_world
    result = evaluate(ga_model, model, world, tmp_path / "ev")
    assert result["metrics"]["g_eval"] is None  # no judge: missing, not invented
    check(ga_figures(result), "ga.")  # forgets, far from the original, less fluent
    # siu bench run's cache of the original's side: the same figures as computed afresh
    from siu.eval.run import evaluate as evaluate_here

    sides: dict[str, object] = {}
    first = evaluate_here(ga_model, model, world, CONCEPT, tmp_path / "a", sides=sides, log=lambda *_: None)
    cached = evaluate_here(ga_model, model, world, CONCEPT, tmp_path / "b", sides=sides, log=lambda *_: None)
    assert len(sides) == 1
    for other in (first, cached):
        assert json.dumps(other["metrics"]) == json.dumps(result["metrics"])
        assert json.dumps(other["original_values"]) == json.dumps(result["original_values"])


def test_bad_inputs(
    micro_world: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    world, model = micro_world
    base = ["--model", str(model), "--original", str(model), "--bench", str(world)]
    out = tmp_path / "ev"
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    code, _, err = _eval(
        capsys,
        *base,
        "--concept",
        CONCEPT,
        "--judge",
        "openai",
        "--judge-key-env",
        "NO_SUCH_KEY",
        "--out",
        str(out),
    )
    assert code == 2 and "NO_SUCH_KEY" in err and not out.exists()
    code, _, err = _eval(capsys, *base, "--concept", "tesquo velrx", "--out", str(out))
    assert code == 2 and "did you mean" in err and not out.exists()
    code, _, err = _eval(
        capsys, "--model", str(model), "--original", str(tiny_vlm_dir("llava")), "--bench", str(world),
        "--concept", CONCEPT, "--out", str(out),
    )  # fmt: skip
    assert code == 2 and "different tokenizer" in err and not out.exists()
    (out / "x").parent.mkdir()
    (out / "x").write_text("keep")
    code, _, err = _eval(capsys, *base, "--concept", CONCEPT, "--out", str(out))
    assert code == 2 and "--overwrite" in err and (out / "x").read_text() == "keep"
    with pytest.raises(SystemExit):
        main(["eval", *base, "--concept", CONCEPT, "--judge", "gpt9", "--out", str(out)])
