"""The evaluation's pure scores against hand computations."""

import math

import pytest
import torch

from siu.eval.scores import (
    auc,
    bernoulli_kl,
    diversity,
    loss_score,
    min_k_plus_plus,
    min_k_prob,
    rouge_l_recall,
    zlib_score,
)


def test_min_k_takes_the_lowest_fraction() -> None:
    lp = torch.tensor([-0.1, -3.0, -0.5, -2.0, -0.2])
    assert min_k_prob(lp, 0.4) == pytest.approx((-3.0 - 2.0) / 2)  # ceil(0.4 * 5) = 2 lowest
    assert min_k_prob(lp, 0.01) == pytest.approx(-3.0)  # at least one token
    assert math.isnan(min_k_prob(torch.tensor([]), 0.4))


def test_min_k_plus_plus_standardises() -> None:
    lp, mu, sigma = torch.tensor([-1.0, -4.0]), torch.tensor([-2.0, -2.0]), torch.tensor([0.5, 1.0])
    assert min_k_plus_plus(lp, mu, sigma, 0.5) == pytest.approx(-2.0)  # min(2.0, -2.0)


def test_loss_and_zlib() -> None:
    lp = torch.tensor([-1.0, -3.0])
    assert loss_score(lp) == pytest.approx(-2.0)
    import zlib

    assert zlib_score(lp, "abc") == pytest.approx(-4.0 / len(zlib.compress(b"abc")))


def test_auc_counts_pairs_and_ties() -> None:
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0], [2.0]) == 0.0
    assert auc([1.0, 3.0], [2.0, 1.0]) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert math.isnan(auc([], [1.0]))


def test_rouge_l_recall_and_diversity() -> None:
    assert rouge_l_recall("he was born in Paris in 1950", "born in Paris") == 1.0
    assert rouge_l_recall("Paris born", "born in Paris") == pytest.approx(1 / 3)
    assert diversity("a b a b") == 50.0 and diversity("") == 0.0


def test_bernoulli_kl() -> None:
    p, q = 0.9, 0.5
    assert bernoulli_kl(p, q) == pytest.approx(0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5))
    assert bernoulli_kl(0.3, 0.3) == pytest.approx(0.0)


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
