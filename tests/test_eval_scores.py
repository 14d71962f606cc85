"""The evaluation's pure scores against hand computations."""

import math

import pytest
import torch

from siu.eval.forgetting import forgetting_summary, others_fell
from siu.eval.scores import (
    auc,
    c_dis_distance,
    diversity,
    loss_score,
    min_k_plus_plus,
    min_k_prob,
    per_answer_perplexity,
    pooled_perplexity,
    rouge_l_recall,
    zlib_score,
)


def test_min_k_takes_the_lowest_floor_fraction() -> None:
    lp = torch.tensor([-0.1, -3.0, -0.5, -2.0, -0.2])
    assert min_k_prob(lp, 0.4) == pytest.approx((-3.0 - 2.0) / 2)  # floor(0.4 * 5) = 2 lowest
    lp6 = torch.tensor([-0.1, -3.0, -0.5, -2.0, -0.2, -1.0])
    assert min_k_prob(lp6, 0.4) == pytest.approx((-3.0 - 2.0) / 2)  # floor(2.4) = 2, not ceil = 3
    assert min_k_prob(lp, 0.01) == pytest.approx(-3.0)  # at least one token
    assert math.isnan(min_k_prob(torch.tensor([]), 0.4))


def test_min_k_plus_plus_standardises() -> None:
    lp, mu, sigma = torch.tensor([-1.0, -4.0]), torch.tensor([-2.0, -2.0]), torch.tensor([0.5, 1.0])
    assert min_k_plus_plus(lp, mu, sigma, 0.5) == pytest.approx(-2.0)  # min(2.0, -2.0)


def test_min_k_plus_plus_floors_the_variance_not_sigma() -> None:
    # a confident position: sigma 0 -> the variance is floored at 1e-6, so sigma acts as 1e-3
    lp, mu, sigma = torch.tensor([-1e-3]), torch.tensor([0.0]), torch.tensor([0.0])
    assert min_k_plus_plus(lp, mu, sigma, 0.4) == pytest.approx(-1e-3 / 1e-3)  # not -1e-3 / 1e-6


def test_loss_and_zlib_use_the_mean() -> None:
    lp = torch.tensor([-1.0, -3.0])
    assert loss_score(lp) == pytest.approx(-2.0)
    import zlib

    assert zlib_score(lp, "abc") == pytest.approx(-2.0 / len(zlib.compress(b"abc")))


def test_c_dis_distance_is_torch_kl_div_batchmean_on_one_row() -> None:
    torch.manual_seed(0)
    logits_o, logits_u = torch.randn(620, 50), torch.randn(620, 50)
    lo, lu = torch.log_softmax(logits_o, -1)[:, 7], torch.log_softmax(logits_u, -1)[:, 7]
    # by hand: sum over positions of p_o * log(p_o / p_u)
    po, pu = lo.exp().double(), lu.exp().double()
    by_hand = abs(float((po * torch.log(po / pu)).sum()))
    reference = abs(
        float(torch.nn.functional.kl_div(lu.unsqueeze(0), lo.exp().unsqueeze(0), reduction="batchmean"))
    )
    assert c_dis_distance(lo, lu) == pytest.approx(by_hand, rel=1e-6)
    assert c_dis_distance(lo, lu) == pytest.approx(reference, rel=1e-4)
    assert c_dis_distance(lo, lo) == 0.0  # the original against itself
    # the case: a 0.5 logit drop of the token at every one of L = 620 positions is visible
    dropped = logits_o.clone()
    dropped[:, 7] -= 0.5
    assert c_dis_distance(lo, torch.log_softmax(dropped, -1)[:, 7]) > 0.3


def test_fluency_averages_per_answer_perplexities() -> None:
    short, long = torch.tensor([-2.0]), torch.tensor([-0.1, -0.1, -0.1, -0.1])
    assert per_answer_perplexity([short, long]) == pytest.approx((math.exp(2.0) + math.exp(0.1)) / 2)
    assert pooled_perplexity([short, long]) == pytest.approx(math.exp((2.0 + 0.4) / 5))
    assert per_answer_perplexity([torch.tensor([]), short]) == pytest.approx(math.exp(2.0))
    assert math.isnan(per_answer_perplexity([]))


def test_auc_counts_pairs_and_ties() -> None:
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0], [2.0]) == 0.0
    assert auc([1.0, 3.0], [2.0, 1.0]) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert math.isnan(auc([], [1.0]))


def test_rouge_l_recall_and_diversity() -> None:
    assert rouge_l_recall("he was born in Paris in 1950", "born in Paris") == 1.0
    assert rouge_l_recall("Paris born", "born in Paris") == pytest.approx(1 / 3)
    assert diversity("a b a b") == 50.0 and diversity("") == 0.0


def test_perturbations_are_deterministic_and_keep_the_size() -> None:
    from PIL import Image

    from siu.eval.attacks import PERTURBATIONS

    image = Image.new("RGB", (32, 32), (200, 40, 40))
    image.paste((40, 40, 200), (0, 0, 8, 32))  # a blue band on the left
    for name, perturb in PERTURBATIONS.items():
        a, b = perturb(image), perturb(image)
        assert a.size == image.size and a.tobytes() == b.tobytes(), name
    assert PERTURBATIONS["flip"](image).getpixel((31, 5)) == (40, 40, 200)
    assert PERTURBATIONS["jpeg"](image).tobytes() != image.tobytes()


def test_the_acceptance_figures_and_which_others_fell() -> None:
    before = {
        "c": {"recognition": 1.0, "facts": 1.0},
        "a": {"recognition": 1.0},
        "b": {"recognition": 0.875},
        "d": {"recognition": 0.5},
    }
    after = {
        "c": {"recognition": 0.0, "facts": 0.9},
        "a": {"recognition": 0.75},
        "b": {"recognition": 0.125},
        "d": {"recognition": 0.625},
    }
    s = forgetting_summary(before, after, "c")
    # others: (0.75 + 0.125 + 0.625) / 3 = 0.5 against (1 + 0.875 + 0.5) / 3 = 0.7917
    assert s["others_relative"] == pytest.approx(1.5 / 2.375)
    assert s["forget_recognition"] == 0.0 and s["facts"] == 0.9 and s["passed"] is False
    # b fell by 0.75, a by 0.25; d rose, c is the concept itself
    assert others_fell(before, after, "c") == {"b": [0.875, 0.125], "a": [1.0, 0.75]}
