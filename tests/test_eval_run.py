"""``siu eval`` end to end on the micro world: every metric, traceable answers, clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from siu.cli import main
from siu.eval.metrics import METRICS
from siu.unlearn.run import UnlearnConfig, unlearn

CONCEPT = "tesquo-velrix"


def _eval(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["eval", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def ga_model(micro_world: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gradient ascent for 10 steps: forgets by wrecking the model (the paper's GA failure)."""
    world, model = micro_world
    out = tmp_path_factory.mktemp("ga") / "m"
    unlearn(
        model,
        CONCEPT,
        None,
        world,
        UnlearnConfig(method="ga", seed=0),
        out,
        progress=False,
        log=lambda *_: None,
    )
    return out


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
    assert m["efficacy_em"] <= 10 and m["generality_em"] <= 10  # the original recognises its concept
    assert m["g_eval"] >= 4 and result["judge"] == "rubric"
    assert m["specificity"] == pytest.approx(100.0) and m["c_dis"] == pytest.approx(0.0, abs=1e-9)
    assert m["fact_retention"] >= 0.9 and m["jailbreak_multilingual"] >= 0.8
    assert m["mia_auc_loss"] >= 0.9  # the original still sees C in C's pictures, not in others'
    assert "mia_auc_retain" in result["details"]["missing"]
    assert all(0.0 <= m[f"attack_{k}"] <= 1.0 for k in ("crop", "flip", "blur", "jpeg", "unseen_phrasing"))
    assert m["attack_unseen_phrasing"] >= 0.8  # the original recognises C with unseen phrasings too
    # 8-bit rounding does not make the original forget C (benign fine-tuning on the micro world's three
    # other concepts may: the original's own figure under each attack is reported beside, for that)
    assert m["attack_quant8"] >= 0.8
    reference = result["details"]["attack_original"]
    kinds = ("crop", "flip", "blur", "jpeg", "quant8", "quant4", "relearn")
    assert set(reference) == {f"attack_{k}" for k in kinds}
    for key in ("attack_quant8", "attack_relearn"):  # the same model twice: the same figure
        assert reference[key] == pytest.approx(m[key])
    assert len(result["details"]["attack_relearn_losses"]) >= 2
    records = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    kinds = {r["metric"] for r in records}
    assert {"efficacy_em", "generality_em", "g_eval", "fact_retention", "jailbreak_multihop"} <= kinds
    assert "efficacy_em" in stdout and "missing" in stdout
    assert "<table>" in (out / "report.html").read_text()


def test_gradient_ascent_forgets_by_breaking_the_model(
    micro_world: tuple[Path, Path], ga_model: Path, tmp_path: Path, capsys
) -> None:
    world, model = micro_world
    code, stdout, _ = _eval(
        capsys, "--model", str(ga_model), "--original", str(model), "--bench", str(world), "--concept", CONCEPT,
        "--out", str(tmp_path / "ev"),
    )  # fmt: skip
    assert code == 0, stdout
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]
    assert m["generality_em"] >= 80 and m["g_eval"] is None  # no judge: missing, not invented
    assert m["c_dis"] > 0.01 and m["fluency_ppl"] > 1.5


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
