"""``siu unlearn --plan`` for the real models a user has, without downloading them.

Writes config-only model directories (no weights) of LLaVA-1.5-7B/13B, Qwen2-VL-7B-Instruct and
Idefics3-8B-Llama3, with the architecture values of their published ``config.json`` and processors of
the real image geometry (LLaVA 336 pixels -> 576 tokens; Qwen2-VL 14-pixel patches merged 2x2, the
image capped at 1024 pixels; Idefics3 364-pixel tiles of 169 tokens, split up to 1456 pixels), and
prints the plan of each with the paper profile (LoRA r=128, batch 4, bfloat16). The tokenizers are
small local stand-ins (the vocabulary *size* is the real one, so the logits cost what they cost);
prompts are therefore a few tokens longer than with the real tokenizers.

    python benchmarks/plan_shapes.py                            # every shape, with checkpointing
    python benchmarks/plan_shapes.py --models llava-1.5-7b --options ""   # without
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the tiny VLMs' local tokenizers and chat templates

import torch  # noqa: E402
from scale import SHAPES, TEXTS  # noqa: E402

from siu.cli import build_parser  # noqa: E402
from siu.tables import format_table  # noqa: E402
from siu.unlearn.cli import unlearn_config_from_args  # noqa: E402
from siu.unlearn.plan import GiB, plan  # noqa: E402
from siu.world.tiny_llava import build_config, build_processor, train_tokenizer  # noqa: E402


def llava(name: str, out: Path) -> None:
    shape = SHAPES[name]
    tokenizer = train_tokenizer(TEXTS * 20, vocab_size=400)
    build_config(tokenizer, shape, vocab_size=shape.vocab_size, vision_feature_layer=-2).save_pretrained(out)
    build_processor(tokenizer, shape).save_pretrained(out)


def qwen2_vl_7b(out: Path) -> None:
    import tiny_vlms as t
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessorPil, Qwen2VLProcessor

    tokenizer = t.train_tokenizer(
        t.QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )  # fmt: skip
    images = Qwen2VLImageProcessorPil(
        patch_size=14, merge_size=2, temporal_patch_size=2,
        size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280},
    )  # fmt: skip
    with t.video_stand_in():
        processor = Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer,
                                     video_processor=t.video_processor_stand_in(),
                                     chat_template=t.QWEN_CHAT_TEMPLATE)  # fmt: skip
        processor.save_pretrained(out)
    ids = tokenizer.convert_tokens_to_ids
    Qwen2VLConfig(
        vision_config={"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "num_heads": 16, "mlp_ratio": 4,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        text_config={"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                     "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                     "max_position_embeddings": 32768, "tie_word_embeddings": False,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6},
                     "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>")},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    ).save_pretrained(out)  # fmt: skip


def idefics3_8b(out: Path) -> None:
    import tiny_vlms as t
    from transformers import Idefics3Config, Idefics3ImageProcessorPil, Idefics3Processor

    tokenizer = t.train_tokenizer(t.IDEFICS_SPECIALS, bos_token="<|begin_of_text|>", eos_token="<end_of_utterance>",
                                  pad_token="<pad>", padding_side="left", add_bos_token=False)  # fmt: skip
    images = Idefics3ImageProcessorPil(size={"longest_edge": 4 * 364}, max_image_size={"longest_edge": 364},
                                       do_image_splitting=True)  # fmt: skip
    Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=169,
                      chat_template=t.IDEFICS_CHAT_TEMPLATE).save_pretrained(out)  # fmt: skip
    ids = tokenizer.convert_tokens_to_ids
    Idefics3Config(
        vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                       "num_attention_heads": 16, "image_size": 364, "patch_size": 14},
        text_config={"model_type": "llama", "vocab_size": 128259, "hidden_size": 4096, "intermediate_size": 14336,
                     "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                     "max_position_embeddings": 131072, "rope_theta": 500000.0, "tie_word_embeddings": False,
                     "bos_token_id": ids("<|begin_of_text|>"), "eos_token_id": ids("<end_of_utterance>"),
                     "pad_token_id": ids("<pad>")},
        image_token_id=ids("<image>"), scale_factor=2, pad_token_id=ids("<pad>"),
    ).save_pretrained(out)  # fmt: skip


BUILDERS: dict[str, Any] = {
    "llava-1.5-7b": lambda out: llava("llava-1.5-7b", out),
    "llava-1.5-13b": lambda out: llava("llava-1.5-13b", out),
    "qwen2-vl-7b": qwen2_vl_7b,
    "idefics3-8b": idefics3_8b,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(BUILDERS), help=f"comma-separated: {', '.join(BUILDERS)}")
    ap.add_argument("--options", default="--gradient-checkpointing",
                    help="siu unlearn options of the planned run (default: --gradient-checkpointing)")  # fmt: skip
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            out = Path(tmp) / name
            BUILDERS[name](out)
            unlearn_args = build_parser().parse_args(
                ["unlearn", "--model", str(out), *shlex.split(args.options)]
            )
            import tiny_vlms

            with tiny_vlms.video_stand_in():  # Qwen2-VL's processor loads without torchvision
                p = plan(out, unlearn_config_from_args(unlearn_args), getattr(torch, args.dtype),
                         log=lambda *_: None)  # fmt: skip
            print(f"{name}: {p.report()}", flush=True)
            rows.append([name, p.tokens, f"{p.weights / GiB:.1f}", f"{p.state / GiB:.1f}",
                         f"{p.activations / GiB:.1f}", f"{p.total / GiB:.1f}",
                         " ".join(f"{c}:{'yes' if p.fits(c) else 'no'}" for c in (24, 40, 80))])  # fmt: skip
    print(f"\nsiu unlearn --plan {args.options} ({args.dtype}; GiB)")
    print(format_table(["model", "tokens", "weights", "state", "activations", "total", "fits (GB)"], rows))


if __name__ == "__main__":
    main()
