"""The model adapter on three real (tiny, random) families: LLaVA, Qwen2-VL and Idefics3.

Checks that labels and target masks stay on the answer however many tokens an image placeholder
becomes, that vision tensors batch for a forward pass, and that batched generation and scoring agree
with one-sample-at-a-time runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_vlms import HAS_TORCHVISION, video_stand_in

from siu.errors import ModelError
from siu.models.adapter import IGNORE_INDEX, VLM, Sample

FAMILIES = ["llava", "qwen2_vl", "idefics3"]
END_OF_TURN = {"llava": "</s>", "qwen2_vl": "<|im_end|>", "idefics3": "<end_of_utterance>"}


def _image(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    img = Image.new("RGB", size, colour)
    for x in range(0, size[0], 4):  # some structure, so patches differ
        img.putpixel((x, x % size[1]), (255 - colour[0], x % 256, colour[2]))
    return img


SAMPLES = [
    # image + text, target phrase in the middle of the answer
    Sample(
        "What is in the image?",
        "This is Zorblax Quint, a famous painter.",
        _image((56, 56), (200, 30, 30)),
        "Zorblax Quint",
    ),
    # text only, target phrase in the middle
    Sample("Who is this person?", "The old man likes the blue house in the city.", None, "blue house"),
    # image (another size) + text, no target
    Sample("Describe the picture.", "It is a photo of a cat.", _image((40, 24), (20, 160, 90))),
    # text only, no target, short prompt
    Sample("Where?", "In the park."),
]


@pytest.fixture(scope="module", params=FAMILIES)
def family_vlm(request: pytest.FixtureRequest, tiny_vlm_dir: Callable[[str], Path]) -> tuple[str, VLM]:
    family = request.param
    with video_stand_in():  # Qwen2-VL's processor needs a video processor; see tiny_vlms
        vlm = VLM.load(tiny_vlm_dir(family))
    return family, vlm


def _image_token_id(vlm: VLM) -> int:
    cfg = vlm.model.config
    return int(getattr(cfg, "image_token_id", None) or cfg.image_token_index)


def _expected_image_tokens(family: str, vlm: VLM, vision: dict[str, torch.Tensor]) -> int:
    """How many image tokens the *model* consumes for one encoded image, from its own config."""
    cfg = vlm.model.config
    if family == "llava":
        # CLIP patches; the CLS token is dropped by the "default" feature-select strategy
        return (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    if family == "qwen2_vl":
        merge = cfg.vision_config.spatial_merge_size
        grid = vision["image_grid_thw"]
        assert vision["pixel_values"].shape[0] == int(grid.prod())  # one row per patch
        return int(grid.prod()) // merge**2
    v = cfg.vision_config
    return (v.image_size // v.patch_size) ** 2 // cfg.scale_factor**2


def _decode(vlm: VLM, ids: list[int]) -> str:
    return vlm.tokenizer.decode(ids, skip_special_tokens=False)


def test_encode_aligns_labels_and_target_after_image_tokens(family_vlm: tuple[str, VLM]) -> None:
    family, vlm = family_vlm
    items = [vlm.encode_one(s) for s in SAMPLES]
    batch = vlm.collate(items)
    image_id = _image_token_id(vlm)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["target_mask"].shape
    for row, (sample, item) in enumerate(zip(SAMPLES, items, strict=True)):
        ids = batch["input_ids"][row]
        labels = batch["labels"][row]
        mask = batch["target_mask"][row]
        # right padding: the sample's own tokens come first, unchanged
        assert ids[: len(item.input_ids)].tolist() == item.input_ids
        assert int(batch["attention_mask"][row].sum()) == len(item.input_ids)

        # (a) labels: exactly the answer plus the end-of-turn token, contiguous, copied from input_ids
        label_pos = (labels != IGNORE_INDEX).nonzero().flatten()
        assert label_pos.numel() > 0
        assert label_pos.tolist() == list(range(int(label_pos[0]), int(label_pos[-1]) + 1))
        assert torch.equal(labels[label_pos], ids[label_pos])
        assert _decode(vlm, ids[label_pos].tolist()).lstrip(" ") == sample.answer + END_OF_TURN[family]
        assert sample.prompt not in _decode(vlm, ids[label_pos].tolist())

        # (b) target mask: exactly the target phrase, inside the labels
        mask_pos = mask.nonzero().flatten()
        if sample.target_phrase is None:
            assert mask_pos.numel() == 0
        else:
            assert _decode(vlm, ids[mask_pos].tolist()).lstrip(" ") == sample.target_phrase
            assert set(mask_pos.tolist()) <= set(label_pos.tolist())
            assert int(mask_pos[0]) > int(label_pos[0])  # the phrase is mid-answer

        # (c) the image placeholder grew to what the model expects, and labels/masks lie after it
        image_pos = (ids == image_id).nonzero().flatten()
        if sample.image is None:
            assert image_pos.numel() == 0
            assert not item.vision
        else:
            assert image_pos.numel() == _expected_image_tokens(family, vlm, item.vision)
            assert image_pos.numel() > 1
            assert int(image_pos[-1]) < int(label_pos[0])
            if mask_pos.numel():
                assert int(image_pos[-1]) < int(mask_pos[0])
    if family == "qwen2_vl":
        assert image_pos.numel() == 0  # the last sample is text-only
        first = items[0]
        assert first.vision["image_grid_thw"].tolist() == [[1, 8, 8]]  # 56x56 -> 32x32 -> 8x8 patches


def test_forward_on_collated_mixed_batch(family_vlm: tuple[str, VLM]) -> None:
    _, vlm = family_vlm
    batch = vlm.to_device(vlm.encode(SAMPLES))
    with torch.no_grad():
        out = vlm.model(**VLM.model_inputs(batch))
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert torch.isfinite(out.logits).all()
    # images-only and text-only batches work too
    for subset in ([SAMPLES[0], SAMPLES[2]], [SAMPLES[1], SAMPLES[3]]):
        b = vlm.to_device(vlm.encode(subset))
        with torch.no_grad():
            assert vlm.model(**VLM.model_inputs(b)).logits.shape[:2] == b["input_ids"].shape


def test_batched_generation_equals_one_at_a_time(family_vlm: tuple[str, VLM]) -> None:
    _, vlm = family_vlm
    batched = vlm.generate(SAMPLES, max_new_tokens=6)
    assert len(batched) == len(SAMPLES)
    assert all(isinstance(a, str) for a in batched)
    single = [vlm.generate([s], max_new_tokens=6)[0] for s in SAMPLES]
    assert batched == single
    assert vlm.generate(SAMPLES, max_new_tokens=6, batch_size=3) == single  # uneven chunks


def test_answer_logprobs_match_manual_computation(family_vlm: tuple[str, VLM]) -> None:
    _, vlm = family_vlm
    got = vlm.answer_logprobs(SAMPLES)
    assert len(got) == len(SAMPLES)
    for sample, lp in zip(SAMPLES, got, strict=True):
        enc = vlm.encode_one(sample)
        n_labels = sum(t != IGNORE_INDEX for t in enc.labels)
        assert lp.ndim == 1 and lp.numel() == n_labels
        assert (lp <= 0).all()
        # one sample alone, no padding: log-softmax of the logits before each label token
        one = vlm.to_device(vlm.collate([enc]))
        with torch.no_grad():
            logits = vlm.model(**VLM.model_inputs(one)).logits[0].float()
        labels = one["labels"][0]
        pos = (labels != IGNORE_INDEX).nonzero().flatten()
        manual = torch.log_softmax(logits[pos - 1], dim=-1).gather(-1, labels[pos].unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(lp, manual.cpu(), atol=1e-4, rtol=1e-4)


def test_question_logprobs_cover_the_question_text_only(family_vlm: tuple[str, VLM]) -> None:
    _, vlm = family_vlm
    got = vlm.question_logprobs(SAMPLES)
    for sample, lp in zip(SAMPLES, got, strict=True):
        enc = vlm.encode_question(sample)
        labelled = [t for t in enc.labels if t != IGNORE_INDEX]
        # the question's own tokens, decoded, give back the question (no template, no image tokens)
        assert vlm.tokenizer.decode(labelled).strip() == sample.prompt
        assert lp.numel() == len(labelled) and (lp <= 0).all()


def test_prompt_token_logprobs_cover_every_prompt_position(family_vlm: tuple[str, VLM]) -> None:
    _, vlm = family_vlm
    ids = [5, 7]
    got = vlm.prompt_token_logprobs(SAMPLES, ids, batch_size=2)  # left padding removed per sample
    for sample, lp in zip(SAMPLES, got, strict=True):
        enc = vlm.encode_prompt(sample)
        assert lp.shape == (len(enc.input_ids), len(ids))  # image positions included
        one = vlm.to_device(vlm.collate([enc]))
        with torch.no_grad():
            logits = vlm.model(**VLM.model_inputs(one)).logits[0].float()
        torch.testing.assert_close(lp, torch.log_softmax(logits, -1)[:, ids].cpu(), atol=1e-4, rtol=1e-4)


def test_generation_says_which_answers_ran_into_the_limit(family_vlm: tuple[str, VLM]) -> None:
    _, vlm = family_vlm
    answers, cut = vlm.generate_with_limits(SAMPLES, max_new_tokens=3)
    assert answers == vlm.generate(SAMPLES, max_new_tokens=3) and len(cut) == len(SAMPLES)
    # a random tiny model rarely ends within 3 tokens; an answer that ended is never "cut"
    for sample, was_cut in zip(SAMPLES, cut, strict=True):
        enc = vlm.to_device(vlm.collate([vlm.encode_prompt(sample)]))
        with torch.no_grad():
            out = vlm.model.generate(**VLM.model_inputs(enc), max_new_tokens=3, do_sample=False,
                                     pad_token_id=vlm.tokenizer.pad_token_id)  # fmt: skip
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        ended = vlm.tokenizer.eos_token_id in new or vlm.tokenizer.pad_token_id in new
        assert was_cut == (not ended and len(new) == 3)


def test_target_phrase_must_be_in_answer(family_vlm: tuple[str, VLM]) -> None:
    _, vlm = family_vlm
    with pytest.raises(ValueError, match="not in answer"):
        vlm.encode([Sample("Who?", "A painter.", None, "Zorblax")])


def test_load_rejects_missing_or_non_model_dirs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model directory"):
        VLM.load(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "tokenizer.json").write_text(json.dumps({}))
    with pytest.raises(ModelError, match="no config.json"):
        VLM.load(empty)


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed: Qwen2-VL's video processor loads")
def test_load_reports_missing_torchvision_as_model_error(tiny_vlm_dir: Callable[[str], Path]) -> None:
    with pytest.raises(ModelError, match=r"needs torchvision.*pip install 'torchvision==0\.\d+\.\*'"):
        VLM.load(tiny_vlm_dir("qwen2_vl"))
