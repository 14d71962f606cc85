"""Weight quantisation and relearning attacks: exact arithmetic, and the model is left as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from siu.eval.attacks import fake_quantise, quantised, relearned
from siu.models.adapter import VLM, Sample


def test_fake_quantise_rounds_to_the_symmetric_grid_by_hand() -> None:
    # 4 bits: levels -7..7; row scale = max |w| / 7 = 0.1
    w = torch.tensor([[0.7, -0.33, 0.12, 0.0]])
    assert torch.allclose(fake_quantise(w, 4), torch.tensor([[0.7, -0.3, 0.1, 0.0]]))
    # groups of 2: each pair gets its own scale (0.7 / 7 and 0.14 / 7)
    w = torch.tensor([[0.7, 0.33, 0.14, -0.05]])
    assert torch.allclose(fake_quantise(w, 4, group_size=2), torch.tensor([[0.7, 0.3, 0.14, -0.04]]))
    # 8 bits is close to the weights, 2 bits is coarse, zeros stay zeros, dtype is kept
    w = torch.randn(8, 100, generator=torch.Generator().manual_seed(0)).to(torch.float16)
    q8, q2 = fake_quantise(w, 8), fake_quantise(w, 2)
    assert q8.dtype == torch.float16 and (q8.float() - w.float()).abs().max() < 0.02
    assert len(torch.unique(q2[0])) <= 3
    assert fake_quantise(torch.zeros(2, 4), 4).abs().sum() == 0


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_quantised_changes_linear_layers_and_restores_them(tiny_vlm_dir: Callable[[str], Path]) -> None:
    vlm = VLM.load(tiny_vlm_dir("llava"))
    before = _weights(vlm.model)
    head = vlm.model.get_output_embeddings()
    with quantised(vlm.model, 4) as n:
        assert n > 0
        inside = _weights(vlm.model)
        assert torch.equal(head.weight, before[next(k for k in before if k.endswith("lm_head.weight"))])
        changed = [k for k in before if not torch.equal(before[k], inside[k])]
        assert changed and all(k.endswith(".weight") for k in changed)
    after = _weights(vlm.model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_relearned_trains_then_leaves_the_model_exactly_as_it_was(
    tiny_vlm_dir: Callable[[str], Path],
) -> None:
    vlm = VLM.load(tiny_vlm_dir("llava"))
    before = _weights(vlm.model)
    flags = [p.requires_grad for p in vlm.model.parameters()]
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    samples = [Sample("Who is this?", "This is Rixo Tamba.", image)] * 4
    probe = [Sample("Who is this?", image=image)]
    first = vlm.generate(probe, max_new_tokens=6)
    with relearned(vlm, samples, seed=0) as losses:
        assert len(losses) >= 2 and losses[-1] < losses[0]  # it fine-tunes
        assert vlm.generate(probe, max_new_tokens=6) != first or losses[-1] < 0.5 * losses[0]
    after = _weights(vlm.model)
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in vlm.model.parameters()] == flags
    assert vlm.generate(probe, max_new_tokens=6) == first
    with relearned(vlm, samples, seed=0) as again:
        assert again == pytest.approx(losses)  # seeded
