"""Tiny, random-initialised but *real* Hugging Face VLMs for tests: LLaVA, Qwen2-VL and Idefics3.

Each builder trains a small byte-level BPE locally, wraps it in the family's real processor class with
a chat template in that family's style, builds a model of ~50-70k parameters, saves both with
``save_pretrained`` and returns the directory, which loads back through ``AutoProcessor`` and
``AutoModelForImageTextToText`` (i.e. ``VLM.load``). Nothing is downloaded.

Qwen2-VL's processor insists on a video processor, and transformers' only one needs torchvision. Where
torchvision is missing, :func:`video_processor_stand_in` supplies an inert ``VideoProcessorMixin``
(videos are never used here); build and load it inside ``with video_stand_in():``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from siu.world import tiny_llava as llava_world

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None

_SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "a young woman", "the teacher", "Zorblax Quint"]
_VERBS = ["sees", "paints", "holds", "likes", "finds", "describes", "carries"]
_OBJECTS = ["a red ball", "the blue house", "a green tree", "the small boat", "an image", "the picture"]
_PLACES = ["in the park", "at home", "near the river", "on the table", "under the sky", "in the city"]
_QUESTIONS = [
    "What is in the image?",
    "Who is this person?",
    "Describe the picture.",
    "What colour is the ball?",
    "Where was this taken?",
]


def corpus() -> list[str]:
    """A few hundred deterministic sentences covering the words the tests use."""
    lines = [
        f"{s.capitalize()} {v} {o} {p}."
        for s, v, o, p in itertools.product(_SUBJECTS, _VERBS, _OBJECTS, _PLACES)
        if (len(s) + len(v) + len(o) + len(p)) % 3 == 0
    ]
    lines += _QUESTIONS * 5
    lines += ["This is Zorblax Quint, a famous painter.", "The answer is yes.", "It is a photo of a cat."] * 5
    return lines


def train_tokenizer(
    special_tokens: list[str], vocab_size: int = 400, **wrapper_kwargs: Any
) -> PreTrainedTokenizerFast:
    """Byte-level BPE over :func:`corpus`; ``special_tokens`` get the first ids and are never split."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(special_tokens),
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=4096, **wrapper_kwargs)


# ---------------------------------------------------------------------------------------------- LLaVA
LLAVA_CFG = llava_world.TinyLlavaConfig(
    image_size=16,
    patch_size=4,
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    text_hidden=32,
    text_layers=1,
    text_heads=2,
    text_intermediate=64,
    max_positions=256,
)


def tiny_llava(tmp_dir: str | Path) -> Path:
    """LLaVA-1.5 layout (CLIP + Llama), built with the project's own ``siu.world.tiny_llava``."""
    out = Path(tmp_dir) / "tiny-llava"
    torch.manual_seed(0)
    tokenizer = llava_world.train_tokenizer(corpus(), vocab_size=400)
    processor = llava_world.build_processor(tokenizer, LLAVA_CFG)
    model = llava_world.build_model(tokenizer, LLAVA_CFG)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# -------------------------------------------------------------------------------------------- Qwen2-VL
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# ChatML as Qwen2-VL writes it: a default system turn, each image as vision_start/image_pad/vision_end.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_PATCH = 4
QWEN_MERGE = 2


def video_processor_stand_in() -> Any:
    """Qwen2-VL's real video processor, or (without torchvision) an inert base-class one."""
    if HAS_TORCHVISION:
        from transformers import Qwen2VLVideoProcessor

        return Qwen2VLVideoProcessor(patch_size=QWEN_PATCH, merge_size=QWEN_MERGE, temporal_patch_size=2)
    from transformers.video_processing_utils import VideoProcessorMixin

    return VideoProcessorMixin()


class _StandInAutoVideoProcessor:
    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        return video_processor_stand_in()


@contextlib.contextmanager
def video_stand_in() -> Iterator[None]:
    """Without torchvision, let ``Qwen2VLProcessor`` be built and loaded with the inert video part.

    Two lookups fail without torchvision: the processor's class check (``VideoProcessorMixin`` is not
    exported at the top of ``transformers``) and ``AutoVideoProcessor`` (a torchvision placeholder).
    Both are restored on exit. With torchvision installed this does nothing.
    """
    if HAS_TORCHVISION:
        yield
        return
    import transformers
    from transformers.models.auto import video_processing_auto
    from transformers.video_processing_utils import VideoProcessorMixin

    saved_auto = video_processing_auto.__dict__["AutoVideoProcessor"]
    had_mixin = "VideoProcessorMixin" in transformers.__dict__
    video_processing_auto.AutoVideoProcessor = _StandInAutoVideoProcessor  # type: ignore[misc,assignment]
    transformers.VideoProcessorMixin = VideoProcessorMixin  # type: ignore[attr-defined]
    try:
        yield
    finally:
        video_processing_auto.AutoVideoProcessor = saved_auto  # type: ignore[misc]
        if not had_mixin:
            del transformers.VideoProcessorMixin  # type: ignore[attr-defined]


def tiny_qwen2_vl(tmp_dir: str | Path) -> Path:
    """Qwen2-VL: 4-pixel patches merged 2x2; at most 32x32 pixels, so a 56x56 image gives 16 image tokens."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
        Qwen2VLProcessor,
    )

    out = Path(tmp_dir) / "tiny-qwen2-vl"
    torch.manual_seed(0)
    tokenizer = train_tokenizer(
        QWEN_SPECIALS,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=QWEN_PATCH,
        merge_size=QWEN_MERGE,
        temporal_patch_size=2,
        size={"shortest_edge": 8 * 8, "longest_edge": 32 * 32},
    )
    with video_stand_in():
        processor = Qwen2VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor_stand_in(),
            chat_template=QWEN_CHAT_TEMPLATE,
        )
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": QWEN_PATCH,
            "spatial_merge_size": QWEN_MERGE,
            "temporal_patch_size": 2,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 512,
            # head_dim 16: the three M-RoPE sections (time, height, width) share its 8 frequencies.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "initializer_range": 0.2,  # large enough that greedy outputs depend on the input
            "bos_token_id": None,
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# -------------------------------------------------------------------------------------------- Idefics3
IDEFICS_ROW_COL = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
IDEFICS_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<pad>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *IDEFICS_ROW_COL,
]

# Idefics3's conversation shape: "User:<image>question<end_of_utterance>\nAssistant: answer<end_of_utterance>\n".
IDEFICS_CHAT_TEMPLATE = (
    "<|begin_of_text|>"
    "{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}:"
    "{% else %}: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
IDEFICS_IMAGE = 16
IDEFICS_PATCH = 4
IDEFICS_SCALE = 2
IDEFICS_SEQ_LEN = (IDEFICS_IMAGE // IDEFICS_PATCH) ** 2 // IDEFICS_SCALE**2  # image tokens per image


def tiny_idefics3(tmp_dir: str | Path) -> Path:
    """Idefics3 (SigLIP-style encoder + pixel shuffle + Llama), no image splitting: 4 tokens per image."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    out = Path(tmp_dir) / "tiny-idefics3"
    torch.manual_seed(0)
    tokenizer = train_tokenizer(
        IDEFICS_SPECIALS,
        bos_token="<|begin_of_text|>",
        eos_token="<end_of_utterance>",
        pad_token="<pad>",
        padding_side="left",
        add_bos_token=False,
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": IDEFICS_IMAGE},
        max_image_size={"longest_edge": IDEFICS_IMAGE},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=IDEFICS_SEQ_LEN,
        chat_template=IDEFICS_CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IDEFICS_IMAGE,
            "patch_size": IDEFICS_PATCH,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "bos_token_id": ids("<|begin_of_text|>"),
            "eos_token_id": ids("<end_of_utterance>"),
            "pad_token_id": ids("<pad>"),
        },
        image_token_id=ids("<image>"),
        scale_factor=IDEFICS_SCALE,
        pad_token_id=ids("<pad>"),
    )
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<end_of_utterance>")
    model.generation_config.pad_token_id = ids("<pad>")
    model.generation_config.bos_token_id = ids("<|begin_of_text|>")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


BUILDERS = {"llava": tiny_llava, "qwen2_vl": tiny_qwen2_vl, "idefics3": tiny_idefics3}
