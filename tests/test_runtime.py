"""Device, precision and memory options: bf16 and fp16 training stay finite and train, gradient
checkpointing gives the gradients it replaces and still trains LoRA, micro-batches give the whole
batch's result for every registered method, and the inputs a model gets match its dtype."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from siu.cli import main
from siu.errors import SiuError
from siu.models.adapter import VLM
from siu.runtime import Runtime
from siu.unlearn.config import UnlearnConfig
from siu.unlearn.methods import method_names
from siu.unlearn.run import unlearn
from siu.unlearn.setup import apply_lora, enable_gradient_checkpointing

QUIET = {"progress": False, "log": lambda *_: None}


def _cfg(overrides: Path, **kw: object) -> UnlearnConfig:
    base = {"steps": 2, "seed": 0, "overrides": str(overrides), "counts": (3, 1, 2, 1), "batch_size": 4}
    return UnlearnConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_runtime_defaults_and_clear_errors() -> None:
    cpu = Runtime().check()
    assert cpu.torch_device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert cpu.torch_dtype == torch.float32  # never the checkpoint's float16 on a CPU
        with pytest.raises(SiuError, match="no CUDA GPU here"):
            Runtime(device="cuda").check()
        with pytest.raises(SiuError, match="needs GPUs"):
            Runtime(device_map="auto").check()
    assert Runtime(dtype="bf16").torch_dtype == torch.bfloat16
    with pytest.raises(SiuError, match="unknown"):
        Runtime(dtype="int3").check()
    with pytest.raises(SiuError, match="not a device"):
        Runtime(device="gpu0").check()
    with pytest.raises(SiuError, match="inference only"):
        Runtime(device_map="auto").check(training=True)
    with pytest.raises(SiuError, match="use 4bit or 8bit"):
        Runtime(load_in="2bit").check()
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:  # an optional extra, named in the error
        with pytest.raises(SiuError, match=r"pip install 'siu\[quant\]'"):
            Runtime(load_in="4bit").check()
    elif not torch.cuda.is_available():
        with pytest.raises(SiuError, match="need a CUDA GPU"):
            Runtime(load_in="4bit").check()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_training_stays_finite_and_trains(
    dtype: str, forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """A bf16 base (and an fp16 one, through the loss scaler) under float32 LoRA weights: finite losses,
    a changed model saved in the base's dtype, and the run records where it ran."""
    image, overrides = forget_inputs
    model = tiny_vlm_dir("llava")
    run = unlearn(
        model, "Zorblax Quint", image, None, _cfg(overrides, steps=3), tmp_path / "o",
        runtime=Runtime(device="cpu", dtype=dtype), **QUIET,
    )  # fmt: skip
    assert all(math.isfinite(r["loss"]) for r in run["losses"])
    assert run["runtime"]["dtype"] == dtype
    after = load_file(tmp_path / "o" / "model.safetensors")
    before = load_file(model / "model.safetensors")
    assert {t.dtype for t in after.values() if t.is_floating_point()} == {getattr(torch, dtype)}
    changed = [k for k in before if not torch.equal(before[k].to(after[k].dtype), after[k])]
    assert changed, "half-precision training must still change the model"
    assert all(torch.isfinite(after[k].float()).all() for k in changed)


def test_float16_full_fine_tuning_is_refused_before_training(
    forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    image, overrides = forget_inputs
    with pytest.raises(SiuError, match="float16 weights cannot be trained"):
        unlearn(
            tiny_vlm_dir("llava"), "Zorblax Quint", image, None, _cfg(overrides, lora=False), tmp_path / "o",
            runtime=Runtime(device="cpu", dtype="float16"), **QUIET,
        )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_inputs_reach_the_model_in_its_dtype(tiny_vlm_dir: Callable[[str], Path]) -> None:
    """Pixel values are cast to a bf16 model's dtype and every tensor is on its device."""
    vlm = VLM.load(tiny_vlm_dir("llava"), Runtime(device="cpu", dtype="bfloat16"))
    assert vlm.dtype == torch.bfloat16
    seen: list[tuple[torch.device, torch.dtype]] = []

    def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen.extend((v.device, v.dtype) for v in [*args, *kwargs.values()] if isinstance(v, torch.Tensor))

    handle = vlm.model.register_forward_pre_hook(hook, with_kwargs=True)
    from siu.models.adapter import Sample

    image = Image.new("RGB", (40, 40), (30, 160, 60))
    vlm.answer_logprobs([Sample("Who is this?", "This is Mira.", image)])
    vlm.generate([Sample("Who is this?", image=image)], max_new_tokens=2)
    handle.remove()
    assert seen and all(device == vlm.device for device, _ in seen)
    assert all(dtype in (torch.long, torch.bool, torch.bfloat16) for _, dtype in seen), seen


def test_gradient_checkpointing_gives_the_same_gradients_and_trains_lora(
    tiny_vlm_dir: Callable[[str], Path],
) -> None:
    from siu.unlearn.losses import cross_entropy

    image = Image.new("RGB", (40, 40), (30, 160, 60))
    from siu.models.adapter import Sample

    grads = []
    for checkpointing in (False, True):
        vlm = VLM.load(tiny_vlm_dir("llava"))
        torch.manual_seed(0)
        model = apply_lora(vlm.model, 8, 16, 0.0)
        if checkpointing:
            enable_gradient_checkpointing(model)
            assert (
                getattr(vlm.model, "is_activation_checkpointing", None) or vlm.model.is_gradient_checkpointing
            )
        model.train()
        batch = vlm.to_device(vlm.encode([Sample("Who is this?", "This is Mira Tolk.", image)] * 2))
        loss = cross_entropy(model(**VLM.model_inputs(batch)).logits, batch["labels"])
        loss.backward()
        lora = {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n and p.grad is not None}
        assert lora and any(float(g.abs().sum()) > 0 for g in lora.values()), "LoRA weights get no gradient"
        grads.append(lora)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_checkpointing_run_trains(
    forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    image, overrides = forget_inputs
    model = tiny_vlm_dir("llava")
    plain = unlearn(model, "Zorblax Quint", image, None, _cfg(overrides), tmp_path / "a", **QUIET)
    ckpt = unlearn(
        model, "Zorblax Quint", image, None, _cfg(overrides, gradient_checkpointing=True), tmp_path / "b", **QUIET
    )  # fmt: skip
    assert ckpt["config"]["gradient_checkpointing"] is True
    for a, b in zip(plain["losses"], ckpt["losses"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    one, two = (
        load_file(tmp_path / "a" / "model.safetensors"),
        load_file(tmp_path / "b" / "model.safetensors"),
    )
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", method_names())
def test_micro_batches_give_the_whole_batchs_result(
    name: str, forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """Gradient accumulation over micro-batches of one sample is the same training as whole batches of
    four, for every registered method (token-, sequence- and pair-averaged parts alike): the same
    logged losses and parts, the same weights."""
    image, overrides = forget_inputs
    model = tiny_vlm_dir("llava")
    runs = [
        unlearn(
            model,
            "Zorblax Quint",
            image,
            None,
            _cfg(overrides, method=name, micro_batch_size=micro),
            tmp_path / str(micro),
            **QUIET,
        )  # fmt: skip
        for micro in (None, 1)
    ]
    for whole, micro in zip(runs[0]["losses"], runs[1]["losses"], strict=True):
        for key in whole:
            assert micro[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-5), key
    one, two = (load_file(tmp_path / d / "model.safetensors") for d in ("None", "1"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    assert dataclasses.asdict(UnlearnConfig())["micro_batch_size"] is None


def test_cli_takes_device_dtype_and_memory_options(
    forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    image, overrides = forget_inputs
    out = tmp_path / "o"
    args = [
        "unlearn", "--model", str(tiny_vlm_dir("llava")), "--concept", "Zorblax Quint", "--image", str(image),
        "--overrides", str(overrides), "--counts", "3,1,2,1", "--steps", "1", "--batch-size", "4",
        "--device", "cpu", "--dtype", "bf16", "--gradient-checkpointing", "--micro-batch-size", "2",
        "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["runtime"]["dtype"] == "bfloat16" and run["runtime"]["device"] == "cpu"
    assert run["config"]["gradient_checkpointing"] is True and run["config"]["micro_batch_size"] == 2
    assert main([*args[:-2], "--dtype", "int3", "--out", str(tmp_path / "p")]) == 2
    assert not (tmp_path / "p").exists()


def test_an_adapter_directory_loads_as_its_merged_model(
    forget_inputs: tuple[Path, Path], tiny_vlm_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """``siu unlearn --adapter-only``'s output evaluates like the merged model of the same run; an adapter
    whose base cannot be found, or with pickle weights only, is a clear error."""
    from siu.errors import ModelError
    from siu.models.adapter import Sample

    image, overrides = forget_inputs
    model = tiny_vlm_dir("llava")
    unlearn(model, "Zorblax Quint", image, None, _cfg(overrides), tmp_path / "merged", **QUIET)
    unlearn(
        model, "Zorblax Quint", image, None, _cfg(overrides), tmp_path / "adapter", adapter_only=True, **QUIET
    )
    assert not (tmp_path / "adapter" / "config.json").exists()
    sample = [Sample("Who is this?", "This is Zorblax Quint.", Image.open(image))]
    merged = VLM.load(tmp_path / "merged").answer_logprobs(sample)[0]
    from_adapter = VLM.load(tmp_path / "adapter").answer_logprobs(sample)[0]
    original = VLM.load(model).answer_logprobs(sample)[0]
    torch.testing.assert_close(from_adapter, merged, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(original, merged), "the adapter must change the model"

    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (moved / name).write_bytes((tmp_path / "adapter" / name).read_bytes())
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no such model directory"):
        VLM.load(moved)
    torch.testing.assert_close(
        VLM.load(moved, base=model).answer_logprobs(sample)[0], merged, rtol=1e-4, atol=1e-5
    )
    (moved / "adapter_model.safetensors").rename(moved / "adapter_model.bin")
    with pytest.raises(ModelError, match="safetensors only"):
        VLM.load(moved, base=model)


def test_one_photo_and_a_model_are_enough(tiny_vlm_dir: Callable[[str], Path], tmp_path: Path) -> None:
    """The README's one-photo flow with default options: no benchmark, no overrides. Target 3 is the
    model's own answers about the concept, target 4 its own answers about well-known subjects."""
    from siu.unlearn.banks import WELL_KNOWN_SUBJECTS

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(photo)
    out = tmp_path / "o"
    args = ["unlearn", "--model", str(tiny_vlm_dir("llava")), "--concept", "Eileen Collins",
            "--image", str(photo), "--steps", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    run = json.loads((out / "run.json").read_text())
    t4 = [s for s in run["dataset"] if s["target"] == 4]
    assert len(t4) == 7 and all(s["answer"].strip() for s in t4)
    assert all(any(name in s["prompt"] for name in WELL_KNOWN_SUBJECTS) for s in t4)
    assert not any("Eileen Collins" in s["prompt"] for s in t4)


def test_a_phone_photo_is_capped_for_qwen2_vl(tiny_vlm_dir: Callable[[str], Path]) -> None:
    """Qwen2-VL keeps an image's resolution; a 4032x3024 photo is scaled to the family's cap (1024) unless
    --max-image-side says otherwise, and the cap is a clear error when negative."""
    from tiny_vlms import video_stand_in

    from siu.models.adapter import MAX_IMAGE_SIDE, Sample, capped

    photo = Image.new("RGB", (4032, 3024), (90, 120, 200))
    assert capped(photo, 1024).size == (1024, 768) and capped(photo, 0) is photo
    with video_stand_in():
        vlm = VLM.load(tiny_vlm_dir("qwen2_vl"))
        small = VLM.load(tiny_vlm_dir("qwen2_vl"), Runtime(device="cpu", dtype="float32", max_image_side=448))
    assert vlm.max_image_side == MAX_IMAGE_SIDE["qwen"] == 1024
    for v in (vlm, small):  # the real Qwen2-VL's pixel budget (the tiny one's is 1024 pixels)
        size = v.processor.image_processor.size
        v.processor.image_processor.size = dataclasses.replace(size, longest_edge=12845056)
    tokens = {
        name: len(v.encode_one(Sample("Who is this?", "A.", photo)).input_ids)
        for name, v in (("cap", vlm), ("448", small))
    }
    # one token per 8x8 pixels here (patch 4, merge 2): 1024x768 and 448x336 pictures
    assert tokens["cap"] - tokens["448"] == 128 * 96 - 56 * 42, tokens
    with pytest.raises(SiuError, match="max-image-side"):
        Runtime(max_image_side=-1).check()
