"""The stopping rule (``--stop auto``): its decisions by hand, its checks on the micro world, its records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from instance_figures import CONCEPT, quiet

from siu.bench.load import load_benchmark
from siu.cli import main
from siu.errors import SiuError
from siu.eval.forgetting import concept_scores, recognition_probes
from siu.models.adapter import VLM
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import unlearn
from siu.unlearn.stopping import (
    CHECK_KINDS,
    CHECK_VIEW_OFFSET,
    StopRule,
    StopState,
    _check_views,
    check_row,
    worst_share,
)
from siu.unlearn.views import SPECKLE_SHARE, colour_cast_view, speckled_view, view


def _figures(named: float, logp: float = -9.0, drift: float = 0.0, others: float = 1.0) -> dict[str, float]:
    return {"named": named, "name_logprob": logp, "drift": drift, "others_named": others}


def test_the_printed_check_names_the_other_concepts_it_loses() -> None:
    check = _figures(0.0) | {"others_drop": 0.3, "others_lost": ["Vellem Brithovel"]}
    check["others_worst"] = {"name": "Vellem Brithovel", "drop": 5.76}
    row = check_row(check)
    assert "no longer named: Vellem Brithovel" in row and "most lost: Vellem Brithovel -5.76" in row
    # under a nat the worst name is the ordinary wobble, and nobody lost: neither is printed
    quiet_row = check_row(check | {"others_lost": [], "others_worst": {"name": "X", "drop": 0.4}})
    assert "no longer named" not in quiet_row and "most lost" not in quiet_row


def test_stops_once_forgotten_for_patience_steps() -> None:
    state = StopState(StopRule(mode="auto", patience=1))
    assert not state.decide(1, _figures(0.5))
    assert not state.decide(2, _figures(0.0))  # forgotten since step 2: one more step
    assert state.decide(3, _figures(0.0))
    assert state.stopped_at == 3 and "since step 2" in state.reason
    record = state.record(cap=20)
    assert record["steps_taken"] == 3 and [c["step"] for c in record["checks"]] == [1, 2, 3]
    assert record["checks"][-1]["stop"] == state.reason


def test_a_few_answers_may_still_name_it() -> None:
    state = StopState(StopRule(mode="auto", patience=0, named_max=0.1))
    assert not state.decide(1, _figures(0.2))
    assert state.decide(2, _figures(0.05))


def test_named_is_the_worst_forgotten_concept_in_a_joint_run() -> None:
    # one concept still named on its one question, the other's ten cleared: pooled 1/11 < 0.1
    hits, groups = [True] + [False] * 10, ["a"] + ["b"] * 10
    assert worst_share(hits, groups) == 1.0
    assert worst_share([True, False, False, False], ["a"] * 4) == 0.25  # one concept: the plain share
    assert worst_share([False, True, False, True], ["a", "a", "b", "b"]) == 0.5


def test_a_relapse_restarts_the_patience() -> None:
    state = StopState(StopRule(mode="auto", patience=1))
    assert not state.decide(1, _figures(0.0))
    assert not state.decide(2, _figures(0.25))  # named again
    assert not state.decide(3, _figures(0.0))
    assert state.decide(4, _figures(0.0))


def test_the_name_must_also_be_unlikely() -> None:
    state = StopState(StopRule(mode="auto", patience=0, name_logprob_max=-4.0))
    assert not state.decide(1, _figures(0.0, logp=-1.0))  # not said, but still the likeliest start
    assert state.decide(2, _figures(0.0, logp=-5.0))


def test_budgets_stop_before_forgetting() -> None:
    drift = StopState(StopRule(mode="auto", drift_budget=0.25))
    assert drift.decide(1, _figures(0.5, drift=0.3)) and "drift" in drift.reason
    others = StopState(StopRule(mode="auto", others_min=1.0))
    assert others.decide(1, _figures(0.5, others=0.9)) and "other concepts" in others.reason
    early = StopState(StopRule(mode="auto", min_steps=3, patience=0))
    assert not early.decide(1, _figures(0.0)) and not early.decide(2, _figures(0.0))
    assert early.decide(3, _figures(0.0))


def test_watch_records_and_never_stops() -> None:
    state = StopState(StopRule(mode="watch", patience=0))
    assert not any(state.decide(s, _figures(0.0, drift=9.0)) for s in range(1, 6))
    record = state.record(cap=5)
    assert record["steps_taken"] == 5 and record["reason"] == "stop watch: every step trained"
    assert len(record["checks"]) == 5 and all(c["stop"] is None for c in record["checks"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"patience": -1}, "patience"),
        ({"check_views": 0}, "check_views"),
        ({"drift_budget": 0}, "drift_budget"),
        ({"others_min": 2}, "others_min"),
        ({"named_max": 1}, "named_max"),
        ({"check_kind": "sepia"}, "check_kind must be one of colour, speckle, far"),
        ({"check_kind": ["far"]}, "check_kind must be one of"),
        ({"nonsense": 1}, "unknown stop rule setting"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(SiuError, match=message):
        UnlearnConfig(stop="auto", stop_rule=settings).check()
    with pytest.raises(SiuError, match="stop must be one of"):
        UnlearnConfig(stop="sometimes").check()


@pytest.mark.parametrize("kind", CHECK_KINDS)
def test_check_views_are_never_training_views(micro_world: tuple[Path, Path], kind: str) -> None:
    bench = load_benchmark(micro_world[0])
    concept = bench.concept(CONCEPT)
    image = bench.load_image(concept, concept.forget_image)
    checks = _check_views(image, 6, seed=0, kind=kind)
    training = [view(image, k, 0, background=True) for k in range(9)]  # the tiny profile's nine
    assert CHECK_VIEW_OFFSET > 9 and len(checks) == 6
    assert all(c.size == image.size and c.mode == "RGB" for c in checks)
    as_bytes = {c.tobytes() for c in checks}
    assert len(as_bytes) == 6 and not as_bytes & {t.tobytes() for t in training}
    assert [c.tobytes() for c in _check_views(image, 6, seed=0, kind=kind)] == [c.tobytes() for c in checks]
    # a colour cast: the channels move apart, unlike the training views' brightness and saturation
    assert _check_views(image, 6, seed=1, kind=kind)[0].tobytes() != checks[0].tobytes()


def test_speckled_views_add_fresh_pixel_noise(micro_world: tuple[Path, Path]) -> None:
    bench = load_benchmark(micro_world[0])
    concept = bench.concept(CONCEPT)
    image = bench.load_image(concept, concept.forget_image)
    k = CHECK_VIEW_OFFSET
    plain, speckled = colour_cast_view(image, k, 0).load(), speckled_view(image, k, 0).load()
    w, h = image.size
    changed = sum(plain[x, y] != speckled[x, y] for x in range(w) for y in range(h))  # type: ignore[index]
    # single pixels at the share asked for (a few land twice or on a pixel of their own colour)
    assert 0.8 * SPECKLE_SHARE * w * h <= changed <= SPECKLE_SHARE * w * h


def test_auto_stops_by_the_rule_and_what_it_stopped_on_holds_on_held_out_pictures(
    micro_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    bench = load_benchmark(world)
    cfg = UnlearnConfig(steps=20, stop="auto")
    run = unlearn(model, CONCEPT, None, world, cfg, tmp_path / "auto", log=quiet)
    stopping = run["stopping"]
    assert run["config"]["stop"] == "auto" and stopping["cap"] == 20
    taken = stopping["steps_taken"]
    assert taken == len(run["losses"]) == run["steps_taken"] < 20
    # it stopped on one of its two reasons (on the micro world's models, whose three other concepts
    # go soon after the concept, often the budget), and the last check says which
    last = stopping["checks"][-1]
    assert last["stop"] == stopping["reason"]
    assert stopping["reason"].startswith(("forgotten on the check views", "other concepts' names lost"))
    assert [c["step"] for c in stopping["checks"]] == list(range(1, taken + 1))
    assert stopping["check_questions"] > 0 and stopping["other_concepts_checked"] == 3
    assert stopping["original"]["named"] == 1.0 and stopping["original"]["others_drop"] == 0.0
    assert "others_worst" not in stopping["original"]  # against itself nothing is worst
    saved = json.loads((tmp_path / "auto" / "run.json").read_text())
    assert saved["stopping"]["stopped_at"] == taken
    # what it stopped on holds on held-out pictures (never seen by the rule): C mostly forgotten,
    # the others kept (bounds with the margin of instance_figures: micro models differ by machine)
    probes = recognition_probes(bench, 8)
    before, _ = concept_scores(VLM.load(model), probes)
    after, _ = concept_scores(VLM.load(tmp_path / "auto"), probes)
    assert after[CONCEPT]["recognition"] <= 0.5 * before[CONCEPT]["recognition"]
    others = [s for s in after if s != CONCEPT]
    assert sum(after[s]["recognition"] for s in others) >= 0.75 * sum(
        before[s]["recognition"] for s in others
    )


def test_any_method_takes_the_rule_from_the_command_line(
    micro_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    out = tmp_path / "watched"
    code = main(
        [
            "unlearn", "--model", str(model), "--bench", str(world), "--concept", CONCEPT, "--out", str(out),
            "--method", "npo", "--steps", "3", "--stop", "watch", "--stop-rule", "check_views=2",
            "--stop-rule", "prompts=2",
        ]
    )  # fmt: skip
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["stop"] == "watch" and run["config"]["stop_rule"] == {"check_views": 2, "prompts": 2}
    assert run["steps_taken"] == 3 and len(run["stopping"]["checks"]) == 3
    first = run["stopping"]["checks"][0]
    assert {"named", "name_logprob", "drift", "others_named", "others_drop"} <= set(first)
    # which other concepts: the ones no longer named are as many as the share says, and the worst
    # drop is at least the mean
    checked = run["stopping"]["other_concepts_checked"]
    others = {c.name for c in load_benchmark(world).concepts if c.slug != CONCEPT}
    for check in run["stopping"]["checks"]:
        assert set(check["others_lost"]) <= others
        assert len(check["others_lost"]) == round((1 - check["others_named"]) * checked)
        assert check["others_worst"]["name"] in others
        assert check["others_worst"]["drop"] >= check["others_drop"] - 1e-9
    # a baseline keeps its fixed budget unless asked: no checks, no cost
    plain = unlearn(
        model, CONCEPT, None, world, UnlearnConfig(method="npo", steps=2), tmp_path / "p", log=quiet
    )
    assert plain["stopping"] is None and plain["steps_taken"] == 2
    assert main(["unlearn", "--model", str(model), "--bench", str(world), "--concept", CONCEPT,
                 "--out", str(tmp_path / "x"), "--stop-rule", "patience"]) == 2  # fmt: skip
