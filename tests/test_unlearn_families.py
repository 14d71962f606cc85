"""Two SIU steps through the one adapter on each supported family: LLaVA, Qwen2-VL, Idefics3."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tiny_vlms import video_stand_in

from siu.models.adapter import VLM
from siu.unlearn.run import UnlearnConfig, unlearn

OVERRIDES = {
    "visible_description": "a painter with a red hat standing by a lake",
    "facts": [
        {"question": "Where was Zorblax Quint born?", "answer": "Zorblax Quint was born in a small town."},
        {"question": "What does Zorblax Quint do?", "answer": "Zorblax Quint is a famous painter."},
    ],
    "other_facts": [{"name": "Mira Tolk", "question": "What does Mira Tolk do?", "answer": "She sings."}],
}


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3"])
def test_two_siu_steps_on_each_family(
    family: str, tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    model_dir = tiny_vlm_dir(family)
    image = tmp_path / "forget.png"
    Image.new("RGB", (56, 56), (200, 40, 40)).save(image)
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps(OVERRIDES))
    before = _weights(model_dir)
    out = tmp_path / "out"
    with video_stand_in():  # Qwen2-VL's processor needs a video processor; see tiny_vlms
        run = unlearn(
            model_dir,
            "Zorblax Quint",
            image,
            None,
            UnlearnConfig(steps=2, seed=0, overrides=str(overrides), counts=(3, 1, 2, 1)),
            out,
            progress=False,
            log=lambda *_: None,
        )
        original_class = type(VLM.load(model_dir).model)
        reloaded = VLM.load(out)
    assert [r["step"] for r in run["losses"]] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["dmk"] >= 0 for r in run["losses"])
    assert {s["target"] for s in run["dataset"]} == {1, 2, 3, 4}
    assert type(reloaded.model) is original_class
    after = _weights(out)
    assert set(after) == set(before), "the merged model must keep the original's weight names"
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    image_side = ("vision", "visual", "multi_modal_projector", "connector")
    assert changed and not [k for k in changed if any(part in k for part in image_side)], (
        "LoRA trains the language model only"
    )
    assert _weights(model_dir).keys() == before.keys()  # the input model is untouched
