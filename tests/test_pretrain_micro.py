"""Science test of the foundation: a micro world's tiny LLaVA knows its concepts, and a gold retain
model does not recognise the concept whose images it never saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from instance_figures import CONCEPT, check, gate_figures
from transformers import AutoModelForImageTextToText, AutoProcessor

from siu.world.gates import THRESHOLDS
from siu.world.pretrain import PretrainConfig, pretrain


@pytest.fixture(scope="module")
def micro(micro_world: tuple[Path, Path]) -> tuple[Path, Path]:
    return micro_world


def test_micro_model_passes_its_gates(micro: tuple[Path, Path]) -> None:
    _, model = micro
    gates = json.loads((model / "gates.json").read_text())
    assert all(0.0 <= gates[key] <= 1.0 for key in THRESHOLDS)
    check(gate_figures(model), "gates.")
    assert gates["passed"]
    # every number traces back to answers
    lines = (model / "gates_answers.jsonl").read_text().splitlines()
    assert len(lines) == gates["answers"]


def test_saved_model_loads_with_auto_classes(micro: tuple[Path, Path]) -> None:
    _, model = micro
    assert sorted(p.name for p in model.glob("*.safetensors"))
    assert not list(model.glob("*.bin")) and not list(model.glob("*.pt"))
    m = AutoModelForImageTextToText.from_pretrained(model)
    p = AutoProcessor.from_pretrained(model)
    assert type(m).__name__ == "LlavaForConditionalGeneration"
    assert p.chat_template and "<image>" in p.tokenizer.get_vocab()


def test_second_run_is_cached(micro: tuple[Path, Path]) -> None:
    world, model = micro
    before = (model / "model.safetensors").stat().st_mtime_ns
    said: list[str] = []
    pretrain(world, model, cfg=PretrainConfig.micro(), progress=False, log=said.append)
    assert said[0].startswith("cached")
    assert (model / "model.safetensors").stat().st_mtime_ns == before


def test_retain_model_forgets_only_its_concept(
    micro: tuple[Path, Path], micro_retain: tuple[Path, Path]
) -> None:
    _, retain = micro_retain
    gates = json.loads((retain / "gates.json").read_text())
    assert gates["without"] == CONCEPT
    # it does not recognise C, the others stay recognised, C's text facts were kept
    check(gate_figures(micro[1], retain), "retain.")
    # exact unlearning differs from the original in its training data only: one tokenizer and one
    # processor, so that token-level comparisons (C-Dis, fluency) with the original are defined
    from siu.models.adapter import VLM

    original, gold = VLM.load(micro[1]), VLM.load(retain)
    assert gold.tokenizer.get_vocab() == original.tokenizer.get_vocab()
    assert gold.processor.image_processor.to_dict() == original.processor.image_processor.to_dict()


def test_a_damaged_cache_is_never_reused(micro: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from siu.errors import SiuError

    world, model = micro
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-8:] = b"\xff" * 8  # the same size, other weights: only a checksum tells
    (copy / "model.safetensors").write_bytes(bytes(weights))
    (copy / "gates.json").write_text((copy / "gates.json").read_text()[:20])
    with pytest.raises(SiuError, match="gates.json, model.safetensors changed since it was written"):
        pretrain(world, copy, cfg=PretrainConfig.micro(), progress=False, log=lambda *_: None)
