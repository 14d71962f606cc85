"""Never save a broken model, never evaluate one: absurd hyper-parameters, non-finite weights."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from test_unlearn_families import OVERRIDES

import siu.unlearn.run as run_module
from siu.errors import SiuError
from siu.eval.run import evaluate
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.run import unlearn


@pytest.mark.parametrize(
    "field,value",
    [("lr", float("inf")), ("lr", 1e30), ("lr", float("nan")), ("lr", 0.0), ("identities", 0), ("others_pictures", -1),
     ("max_grad_norm", float("inf")), ("weight_decay", float("nan"))],
)  # fmt: skip
def test_absurd_hyper_parameters_are_refused_before_any_work(field: str, value: float) -> None:
    with pytest.raises(SiuError, match=field):
        UnlearnConfig(**{field: value}).check()


def test_trained_weights_that_are_not_finite_are_never_saved(
    tiny_vlm_dir: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_train = run_module.train

    def train_then_break(model: torch.nn.Module, *args: object, **kwargs: object) -> object:
        log = real_train(model, *args, **kwargs)  # type: ignore[arg-type]
        with torch.no_grad():  # what --lr 1e30 did: a finite last loss, infinite weights
            next(p for p in model.parameters() if p.requires_grad).fill_(float("inf"))
        return log

    monkeypatch.setattr(run_module, "train", train_then_break)
    Image.new("RGB", (40, 40), (30, 160, 60)).save(tmp_path / "forget.png")
    (tmp_path / "o.json").write_text(json.dumps(OVERRIDES))
    cfg = UnlearnConfig(steps=1, overrides=str(tmp_path / "o.json"), counts=(2, 1, 1, 1))
    out = tmp_path / "out"
    with pytest.raises(SiuError, match="non-finite weights.*nothing was written"):
        unlearn(
            tiny_vlm_dir("llava"),
            "Zorblax Quint",
            tmp_path / "forget.png",
            None,
            cfg,
            out,
            log=lambda *_: None,
        )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["forget.png", "o.json"]


def test_a_model_with_nan_weights_is_refused_at_load(micro_world: tuple[Path, Path], tmp_path: Path) -> None:
    world, model = micro_world
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    weights = load_file(broken / "model.safetensors")
    name = next(k for k in weights if weights[k].is_floating_point())
    weights[name][0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SiuError, match="non-finite weights.*nothing was evaluated"):
        evaluate(broken, model, world, "tesquo-velrix", tmp_path / "ev", log=lambda *_: None)
    assert not (tmp_path / "ev").exists()


def test_models_that_cannot_load_say_why_in_one_line(
    tiny_vlm_dir: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from siu.errors import ModelError
    from siu.models.adapter import VLM

    good = tiny_vlm_dir("llava")
    pickled = tmp_path / "pickled"
    shutil.copytree(good, pickled)
    weights = load_file(pickled / "model.safetensors")
    (pickled / "model.safetensors").unlink()
    torch.save(weights, pickled / "pytorch_model.bin")
    with pytest.raises(
        ModelError, match="only pickle checkpoints .pytorch_model.bin.; siu loads safetensors only"
    ):
        VLM.load(pickled)
    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[:100])
    with pytest.raises(ModelError, match="corrupt weights file model.safetensors"):
        VLM.load(truncated)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ModelError, match="typo/model: no such model directory, and not in the local hub cache"
    ):
        VLM.load("typo/model")


def test_an_original_that_sees_pictures_differently_is_refused(
    micro_world: tuple[Path, Path], tmp_path: Path
) -> None:
    world, model = micro_world
    other = tmp_path / "other"
    shutil.copytree(model, other)
    config = other / "processor_config.json"
    settings = json.loads(config.read_text())
    settings["image_processor"]["image_mean"] = [0.9, 0.9, 0.9]
    config.write_text(json.dumps(settings))
    with pytest.raises(SiuError, match="preprocess images differently .image_mean"):
        evaluate(other, model, world, "tesquo-velrix", tmp_path / "ev", log=lambda *_: None)
    assert not (tmp_path / "ev").exists()
