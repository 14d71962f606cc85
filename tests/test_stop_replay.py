"""scripts/stop_replay.py: the offline replay that chose the stopping rule's settings, on trajectories
written by hand (what scripts/stop_study.py records), each stop worked out by hand."""

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "stop_replay.py"


@pytest.fixture(scope="module")
def replay_module() -> Any:
    spec = importlib.util.spec_from_file_location("stop_replay", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stop_replay"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def step(
    t: int,
    named: list[bool],
    logps: list[float],
    passed: bool,
    drift: float = 0.0,
    forget: float = 0.0,
    others: float = 1.0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One recorded step: the truth (held-out figures, the check questions on views 0, 1, ...) and the
    rule's own record (drift, the others' drop)."""
    truth = {
        "step": t,
        "passed": passed,
        "forget_recognition": forget if not passed else 0.0,
        "others_relative": others,
        "kinds": {
            "colour": {
                "views": list(range(len(named))),
                "named_each": named,
                "name_logprob_each": logps,
            }
        },
    }
    return truth, {"step": t, "drift": drift, "others_drop": 0.0}


def run(concept: str, steps: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    return {"concept": concept, "truth": [s[0] for s in steps], "checks": [s[1] for s in steps]}


NAMED = ([True, True], [-0.1, -0.2])  # the check questions still name it
GONE = ([False, False], [-5.0, -6.0])  # mean -5.5 < -2, nobody names it


def test_patience_waits_for_the_held_out_pictures(replay_module: Any) -> None:
    # check views clear from step 3, the held-out pictures from step 5 (all three goals met from 5)
    lagging = run(
        "lagging",
        [step(1, *NAMED, False, forget=1.0), step(2, *NAMED, False, forget=1.0)]
        + [step(t, *GONE, passed=t >= 5, forget=0.25) for t in range(3, 9)],
    )
    rule = replay_module.Rule
    assert replay_module.stop_step(lagging, rule(patience=1)) == (4, "forgotten")  # forgotten at 3 and 4
    assert replay_module.stop_step(lagging, rule(patience=2)) == (5, "forgotten")
    early = replay_module.replay([lagging], rule(patience=1))
    assert early["passed"] == 0 and early["still_named"] == 1
    assert early["misses"] == [("lagging", 4, "forgotten", 0.25, 1.0, "early")]
    assert replay_module.replay([lagging], rule(patience=2))["passed"] == 1


def test_a_stop_after_the_window_and_one_with_none(replay_module: Any) -> None:
    # all three goals only at steps 2-3 (then the others fall); the check views clear from step 3 on
    narrow = run(
        "narrow",
        [step(1, *NAMED, False, forget=0.5), step(2, *NAMED, True), step(3, *GONE, True)]
        + [step(t, *GONE, False, others=0.9) for t in (4, 5, 6)],
    )
    never = run("never", [step(t, *NAMED, False, forget=1.0) for t in range(1, 5)])
    result = replay_module.replay([narrow, never], replay_module.Rule(patience=2, cap=4))
    assert [m[0] for m in result["misses"]] == ["narrow", "never"]
    assert result["misses"][0][1:3] == (4, "cap")  # forgotten since 3: patience 2 would stop after 5
    assert result["misses"][0][3:] == (0.0, 0.9, "late")
    assert [m[-1] for m in result["misses"]] == ["late", "no window"]
    assert result["others_below"] == 1 and result["still_named"] == 1
    assert result["steps"] == 4


def test_the_retain_budget_and_the_worst_question(replay_module: Any) -> None:
    drifting = run(
        "drifting", [step(1, *NAMED, False), step(2, *NAMED, False, drift=0.3), step(3, *GONE, True)]
    )
    assert replay_module.stop_step(drifting, replay_module.Rule()) == (2, "drift")  # 0.3 > the 0.25 budget
    assert replay_module.stop_step(drifting, replay_module.Rule(drift_budget=None)) == (3, "cap")
    # one question at -1, the other at -5: forgotten on average (-3 < -2), not on the worst one
    split = run("split", [step(1, [False, False], [-1.0, -5.0], True)])
    assert replay_module.stop_step(split, replay_module.Rule(patience=0)) == (1, "forgotten")
    assert replay_module.looks_forgotten(split["truth"][0], replay_module.Rule(agg="max")) is False


def test_a_miss_on_the_others_says_which_fell_and_which_the_check_saw(replay_module: Any) -> None:
    falling = run("falling", [step(1, *NAMED, False, others=0.9), step(2, *GONE, False, others=0.9)])
    assert replay_module.others_at(falling, 2) is None  # an older study: neither recorded
    falling["truth"][1]["others_fell"] = {"vellem": [0.875, 0.125], "kalem": [1.0, 0.75]}
    falling["checks"][1]["others_lost"] = ["Vellem"]
    assert replay_module.others_at(falling, 2) == (
        "held-out pictures: vellem 0.88 -> 0.12, kalem 1.00 -> 0.75; the check saw lost: Vellem"
    )
    del falling["truth"][1]["others_fell"]  # a study from before others_fell: said, not taken as none
    assert replay_module.others_at(falling, 2) == (
        "held-out pictures: not recorded; the check saw lost: Vellem"
    )
    falling["truth"][1]["others_fell"], falling["checks"][1]["others_lost"] = {}, []
    assert replay_module.others_at(falling, 2) == "held-out pictures: none fell; the check saw lost: none"


def test_questions_of_one_form(replay_module: Any) -> None:
    # view 0 asked two of the rule's questions: without the category noun (still naming it) and with it
    truth, _ = step(1, [True, False], [-0.5, -6.0], False, forget=0.5)
    truth["kinds"]["colour"] |= {
        "views": [0, 0],
        "prompts": ["Who appears in this picture?", "What name belongs to the person here?"],
    }
    looks = replay_module.looks_forgotten
    rule = replay_module.Rule
    assert looks(truth, rule(form="noun")) is True  # the noun question alone: cleared
    assert looks(truth, rule(form="noun_free")) is False
    assert looks(truth, rule()) is False  # the default: the first four of every form, both asked
    assert looks(truth, rule(prompts=1)) is False  # the first question only: the noun-free one
    del truth["kinds"]["colour"]["prompts"]  # a study that did not record its questions: every answer
    assert looks(truth, rule(form="noun")) is False
    truth["kinds"]["colour"]["prompts"] = ["Who is pictured here?", "Tell me which person this is."]
    assert looks(truth, rule(form="noun_free", prompts=0)) is False  # every noun-free one: the 3rd asked
    assert looks(truth, rule(form="noun", prompts=0)) is True
    assert looks(truth, rule(prompts=2)) is None  # neither is among the first two: no check question


def test_the_grid_within_a_step_budget_and_per_study(replay_module: Any) -> None:
    # the held-out pictures clear from step 5: no rule stopping by step 4 meets the goals
    lagging = run(
        "lagging",
        [step(1, *NAMED, False, forget=1.0), step(2, *NAMED, False, forget=1.0)]
        + [step(t, *GONE, passed=t >= 5, forget=0.25) for t in range(3, 9)],
    )
    unbounded = replay_module.grid([lagging], ["colour"])
    assert unbounded[0][0]["passed"] == 1
    within = replay_module.grid([lagging], ["colour"], max_steps=4)
    assert within and all(res["steps"] <= 4 for res, _ in within)
    assert max(res["passed"] for res, _ in within) == 0
    studies = {Path("a.json"): [lagging], Path("b.json"): [lagging, lagging]}
    assert (
        replay_module.per_study(studies, replay_module.Rule(patience=2))
        == "a.json 1/1 at 5.00, b.json 2/2 at 5.00"
    )
