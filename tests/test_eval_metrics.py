"""The metrics' protocols (SIU.md section 7) against hand computations, on stand-in models."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from siu.eval.judges import RUBRIC, judge_prompt
from siu.eval.leakage import mia_paper, special_token_pieces
from siu.eval.metrics import _g_eval
from siu.eval.probes import EvalConfig
from siu.models.adapter import Sample


class _Questions:
    """A stand-in model whose question log-probs are given."""

    def __init__(self, logprobs: list[list[float]]) -> None:
        self.logprobs = [torch.tensor(lp) for lp in logprobs]

    def question_logprobs(self, samples: Any, batch_size: int = 32) -> list[torch.Tensor]:
        assert len(samples) == len(self.logprobs)
        return self.logprobs


def _mia(original_answers: list[str], answers: list[str], mine: list[list[float]], theirs: list[float]):
    probes = SimpleNamespace(multihop=[(Sample(f"q{k}?"), None, []) for k in range(len(answers))])
    side = SimpleNamespace(question_min_k=theirs, answers={"multihop": original_answers})
    return mia_paper(_Questions(mine), probes, side, answers, EvalConfig())  # type: ignore[arg-type]


def test_mia_scores_each_answer_against_the_original_answer_to_the_same_question() -> None:
    # an empty original answer once shifted every later answer onto another question's answer
    original = ["", "born in Tenvar", "the blue river", "a red hat"]
    out, records = _mia(original, list(original), [[-1.0]] * 4, [-1.0] * 4)
    assert out["mia_rouge_l"] == 1.0
    # the empty original answer: nothing to recall, so not kept (it would count as "forgotten")
    assert (out["mia_questions"], out["mia_answered_by_original"], out["mia_kept"], out["mia_counted"]) == (
        4, 3, 3, 3,
    )  # fmt: skip
    assert [r["answer"] for r in records] == [r["original"] for r in records]


def test_mia_filters_by_the_ratio_of_min_k_and_leaves_low_recalls_out() -> None:
    original = ["born in Tenvar in spring", "the blue river", "a red hat on a grey head"]
    answers = ["born in Tenvar", "nothing at all", "a red hat"]
    # question 0: Min-K% -1.2 vs -1.0 (ratio 1.2 > 1.15): dropped; Min-K% is the floor(40%) lowest
    mine = [[-1.2, -0.1], [-2.0, -0.1, -0.1, -0.1, -0.1], [-1.0]]
    out, _ = _mia(original, answers, mine, [-1.0, -1.05, -1.0])  # q1 kept only with floor: ceil gives -0.73
    # question 1: recall 0 (<= 0.1) counts as 0 and is left out; question 2: 3 of 7 words
    assert (out["mia_kept"], out["mia_counted"]) == (2, 1)
    assert out["mia_rouge_l"] == pytest.approx(3 / 7)


def test_mia_with_every_recall_at_zero_is_zero_and_with_none_kept_is_missing() -> None:
    out, _ = _mia(["the blue river"], ["nothing"], [[-1.0]], [-1.0])
    assert out["mia_rouge_l"] == 0.0 and out["mia_kept"] == 1
    out, _ = _mia(["the blue river"], ["the blue river"], [[-3.0]], [-1.0])
    assert out["mia_rouge_l"] is None and out["mia_kept"] == 0
    out, _ = _mia([""], ["the blue river"], [[-1.0]], [-1.0])  # the original said nothing: not measured
    assert out["mia_rouge_l"] is None and out["mia_answered_by_original"] == 0


class _Replies:
    name = "stand-in"

    def __init__(self, scores: list[int | None]) -> None:
        self.scores = scores

    def score(self, concept: Any, items: Any) -> list[int | None]:
        return self.scores


def test_g_eval_scores_every_answer_and_counts_replies_without_a_score() -> None:
    probes = [(Sample(f"Who is this? {k}"), f"{k}.png", ["C"]) for k in range(3)]
    value, unscored, records = _g_eval(_Replies([5, None, 2]), None, probes, ["C", "?", "D"])
    assert value == pytest.approx(3.5) and unscored == 1 and len(records) == 3
    assert records[1]["score"] is None


def test_the_judge_is_told_what_each_score_means() -> None:
    concept = SimpleNamespace(name="Tenran Rixtiv", aliases=["Tenran"])
    prompt = judge_prompt(concept, "Who is this?", "Tenran Rixtiv.")  # type: ignore[arg-type]
    assert RUBRIC in prompt
    for score, words in [(1, "irrelevant"), (2, "general category"), (3, "non-specific"),
                         (4, "minor errors"), (5, "accurate detail")]:  # fmt: skip
        assert f"{score}: " in prompt and words in prompt


class _PieceTokenizer:
    """A SentencePiece-like stand-in: " Tenran" -> "▁", "Ten", "ran" (a lone space marker first)."""

    all_special_ids = [0]
    vocab = {"<s>": 0, "▁": 1, "Ten": 2, "ran": 3, "▁Rix": 4, "tiv": 5}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return {" Tenran": [0, 1, 2, 3], " Rixtiv": [4, 5], "  ": [1, 1]}[text]

    def decode(self, ids: list[int]) -> str:
        return "".join(k for k, v in self.vocab.items() for i in ids if v == i).replace("▁", " ")

    def convert_ids_to_tokens(self, i: int) -> str:
        return next(k for k, v in self.vocab.items() if v == i)


def test_special_tokens_use_their_first_piece_after_a_space_skipping_a_bare_marker() -> None:
    pieces = special_token_pieces(_PieceTokenizer(), ["Tenran", "Rixtiv", " "])
    assert pieces == {"Tenran": ("Ten", 2), "Rixtiv": ("▁Rix", 4)}  # " " has no piece: skipped
