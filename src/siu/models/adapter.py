"""One adapter over Hugging Face image-text-to-text models.

Everything that differs between model families (chat templates, how the processor expands an image
placeholder into image tokens, how vision tensors batch) is handled here and nowhere else.

Labels and target-phrase masks are computed from *character spans* of the rendered conversation,
shifted by the processor's own record of how far each image placeholder grew
(``return_text_replacement_offsets``) and mapped to tokens through the tokenizer's offset mapping.
They therefore stay aligned however many image tokens a placeholder becomes — the defect of the
SIU authors' code, which sliced masks to the text length.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from siu.errors import ModelError
from siu.models.files import (
    adapter_chain,
    check_adapter_dir,
    check_hub_id,
    check_model_dir,
    is_adapter_dir,
    torchvision_advice,
)

if TYPE_CHECKING:
    from siu.runtime import Runtime


@dataclass
class Sample:
    """One conversation turn: an optional image, a prompt and (for training/scoring) an answer.

    ``target_phrase`` marks a span of the answer (e.g. the fictitious name) whose tokens get
    ``target_mask = True``.
    """

    prompt: str
    answer: str = ""
    image: Image.Image | None = None
    target_phrase: str | None = None


@dataclass
class Encoded:
    """One encoded sample before padding."""

    input_ids: list[int]
    labels: list[int]  # -100 outside the answer
    target_mask: list[bool]
    vision: dict[str, torch.Tensor]  # pixel_values and friends, empty for text-only samples
    # Per-token modality (0 text, 1 image, 2 video) from processors that return it (Qwen2-VL family):
    # their models need it for M-RoPE positions and refuse images without it, so it is padded like text.
    mm_token_type_ids: list[int] | None = None


IGNORE_INDEX = -100
_TEXT_KEYS = ("input_ids", "attention_mask", "labels", "target_mask")


# Default cap on an image's longer side per family. Qwen2-VL keeps an image's resolution (one token
# per 28x28 patch): a 4032x3024 phone photo would be 15,552 image tokens, so it is scaled to 1024
# (about 1,300 tokens); LLaVA resizes every image to 336 itself and Idefics3 tiles images up to 1456
# pixels, so they need none (0: no cap).
MAX_IMAGE_SIDE = {"qwen": 1024, "idefics": 0, "default": 0}


def capped(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` scaled down (aspect ratio kept) so that its longer side is at most ``max_side``."""
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _family(model_type: str) -> str:
    if model_type in ("idefics3", "smolvlm", "idefics2"):
        return "idefics"
    if model_type.startswith("qwen"):
        return "qwen"
    return "default"


class VLM:
    """A loaded vision-language model with its processor."""

    def __init__(
        self, model: Any, processor: Any, path: str | None = None, max_image_side: int | None = None
    ) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.path = path
        self.family = _family(getattr(model.config, "model_type", ""))
        # images larger than this (longer side, pixels) are scaled down before the processor sees them
        self.max_image_side = max_image_side if max_image_side is not None else MAX_IMAGE_SIDE[self.family]
        if self.tokenizer.pad_token_id is None:
            # Some chat models ship no pad token; padding positions are masked, so EOS serves.
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        runtime: Runtime | None = None,
        trust_remote_code: bool = False,
        base: str | os.PathLike[str] | None = None,
    ) -> VLM:
        """Load a model and its processor from a local directory (or a hub id the machine can reach),
        onto ``runtime``'s device in its dtype (default: the CPU in float32).

        ``path`` may be a LoRA adapter directory: its base model (``base``, or the one the adapter
        names) is loaded and the adapter merged into it in memory; a base that is an adapter too (the
        requests of ``siu unlearn --sequential``) is loaded the same way first, down the chain.
        """
        from safetensors import SafetensorError
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from siu.runtime import CPU

        runtime = runtime or CPU
        if is_adapter_dir(path):
            return cls._load_adapter(Path(path), runtime, trust_remote_code, base)

        spath = str(path)
        local = Path(spath)
        if local.exists():
            check_model_dir(local)
        elif spath.startswith((".", "/", "~")) or spath.count("/") != 1:
            raise ModelError(f"{spath}: no such model directory")
        else:
            check_hub_id(spath)
        placement: dict[str, Any] = {}
        if runtime.device_map:
            placement["device_map"] = runtime.device_map
        if runtime.load_in:  # bitsandbytes places the quantised weights itself
            placement["quantization_config"] = runtime.quantization_config()
            placement.setdefault("device_map", {"": str(runtime.torch_device)})
        try:
            processor = AutoProcessor.from_pretrained(spath, trust_remote_code=trust_remote_code)
            model = AutoModelForImageTextToText.from_pretrained(
                spath,
                dtype=runtime.torch_dtype,
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                **placement,
            )
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError, ImportError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if "torchvision" in first:
                raise ModelError(f"{spath}: {torchvision_advice()}") from err
            raise ModelError(f"{spath}: cannot load model or processor: {first}") from err
        if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
            raise ModelError(
                f"{spath}: the processor is not an image-text processor ({type(processor).__name__})"
            )
        if "device_map" not in placement:
            model.to(runtime.torch_device)
        model.eval()
        return cls(model, processor, spath, max_image_side=runtime.max_image_side)

    @classmethod
    def _load_adapter(
        cls, adapter: Path, runtime: Runtime, trust_remote_code: bool, base: str | os.PathLike[str] | None
    ) -> VLM:
        from peft import PeftModel

        check_adapter_dir(adapter)
        base_path = adapter_chain(adapter, base)[0]  # the whole chain is checked before anything loads
        # the base adapter (itself merged into its own base, down the chain) is loaded first
        vlm = cls.load(base_path, runtime, trust_remote_code=trust_remote_code)
        try:
            with warnings.catch_warnings():  # peft asks transformers v5 for a deprecated attribute
                warnings.filterwarnings(
                    "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
                )
                model = PeftModel.from_pretrained(vlm.model, str(adapter)).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"{adapter}: the adapter does not fit its base {base_path}: {first}") from err
        model.eval()
        return cls(model, vlm.processor, str(adapter), max_image_side=runtime.max_image_side)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ rendering
    def messages(self, sample: Sample, with_answer: bool) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if sample.image is not None:
            content.append({"type": "image"})
        content.append({"type": "text", "text": sample.prompt})
        msgs: list[dict[str, Any]] = [{"role": "user", "content": content}]
        if with_answer:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": sample.answer}]})
        return msgs

    def render_prompt(self, sample: Sample) -> str:
        return self.processor.apply_chat_template(
            self.messages(sample, with_answer=False), tokenize=False, add_generation_prompt=True
        )

    def render(self, sample: Sample) -> tuple[str, tuple[int, int], tuple[int, int] | None]:
        """Render prompt+answer; return the text, the answer turn's char span, the target phrase's span."""
        prompt = self.render_prompt(sample)
        full = self.processor.apply_chat_template(self.messages(sample, with_answer=True), tokenize=False)
        if full.startswith(prompt) and sample.answer in full[len(prompt) :]:
            start = full.index(sample.answer, len(prompt))
        else:  # templates whose generation prompt differs from the rendered turn header
            start = full.rfind(sample.answer)
            if start < 0 or not sample.answer:
                raise ModelError("the chat template did not reproduce the answer text; cannot place labels")
        # The supervised span runs from the end of the generation prompt (so a separator such as the
        # space before the answer, if the tokenizer splits it off, is learned too) to the end of the
        # assistant turn (so end-of-turn tokens are learned).
        end = len(full.rstrip())
        label_start = len(prompt) if full.startswith(prompt) and len(prompt) <= start else start
        target = None
        if sample.target_phrase:
            offset = sample.answer.find(sample.target_phrase)
            if offset < 0:
                raise ValueError(f"target phrase {sample.target_phrase!r} not in answer {sample.answer!r}")
            target = (start + offset, start + offset + len(sample.target_phrase))
        return full, (label_start, end), target

    # ------------------------------------------------------------------ encoding
    def _process(self, text: str, image: Image.Image | None, offsets: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
        if image is not None:
            image = capped(image, self.max_image_side)
            kwargs["images"] = [[image]] if self.family == "idefics" else [image]
        if offsets:
            kwargs["return_offsets_mapping"] = True
            kwargs["return_text_replacement_offsets"] = True
        return self.processor(**kwargs)

    def encode_one(self, sample: Sample) -> Encoded:
        text, (a0, a1), target = self.render(sample)
        return self._encode_spans(text, sample, (a0, a1), target)

    def encode_question(self, sample: Sample) -> Encoded:
        """Encode the prompt for generation with labels on the question's own text tokens (not the chat
        template's, not the image's): what the paper's membership inference scores."""
        text = self.render_prompt(sample)
        start = text.rfind(sample.prompt) if sample.prompt else -1
        if start < 0:
            raise ModelError("the chat template did not reproduce the question text; cannot place labels")
        return self._encode_spans(text, sample, (start, start + len(sample.prompt)), None)

    def _encode_spans(
        self, text: str, sample: Sample, labelled: tuple[int, int], target: tuple[int, int] | None
    ) -> Encoded:
        """Encode ``text`` (with the sample's image): labels on the tokens of the ``labelled`` character
        span, ``target_mask`` on those of ``target``."""
        a0, a1 = labelled
        out = self._process(text, sample.image, offsets=True)
        ids: list[int] = out["input_ids"][0].tolist()
        offsets: list[tuple[int, int]] = [(int(a), int(b)) for a, b in out["offset_mapping"][0].tolist()]
        repl = (out.get("text_replacement_offsets") or [[]])[0]
        ends = [r["span"][1] for r in repl]
        gained = [0]
        for r in repl:
            gained.append(gained[-1] + (r["new_span"][1] - r["new_span"][0]) - (r["span"][1] - r["span"][0]))

        def shift(c: int) -> int:
            return c + gained[bisect.bisect_right(ends, c)]

        def covered(span: tuple[int, int]) -> list[bool]:
            s, e = shift(span[0]), shift(span[1] - 1) + 1
            return [ts < e and te > s and te > ts for ts, te in offsets]

        answer_mask = covered((a0, a1))
        labels = [t if m else IGNORE_INDEX for t, m in zip(ids, answer_mask, strict=True)]
        target_mask = covered(target) if target else [False] * len(ids)
        if target is not None and not any(target_mask):
            raise ModelError(f"target phrase {sample.target_phrase!r} covers no token after encoding")
        return Encoded(ids, labels, target_mask, _vision_tensors(out), _token_types(out))

    def encode_prompt(self, sample: Sample) -> Encoded:
        """Encode a prompt for generation (no answer, no labels)."""
        out = self._process(self.render_prompt(sample), sample.image, offsets=False)
        ids = out["input_ids"][0].tolist()
        return Encoded(
            ids, [IGNORE_INDEX] * len(ids), [False] * len(ids), _vision_tensors(out), _token_types(out)
        )

    def collate(self, items: Sequence[Encoded], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad text tensors and batch vision tensors the way this model family expects."""
        width = max(len(it.input_ids) for it in items)
        pad = self.tokenizer.pad_token_id
        batch: dict[str, list[list[Any]]] = {k: [] for k in (*_TEXT_KEYS, "mm_token_type_ids")}
        for it in items:
            n = width - len(it.input_ids)

            def padded(seq: list[Any], fill: Any, n: int = n) -> list[Any]:
                return [fill] * n + seq if padding_side == "left" else seq + [fill] * n

            batch["input_ids"].append(padded(it.input_ids, pad))
            batch["attention_mask"].append(padded([1] * len(it.input_ids), 0))
            batch["labels"].append(padded(it.labels, IGNORE_INDEX))
            batch["target_mask"].append(padded(it.target_mask, False))
            types = it.mm_token_type_ids if it.mm_token_type_ids is not None else [0] * len(it.input_ids)
            batch["mm_token_type_ids"].append(padded(types, 0))
        out: dict[str, torch.Tensor] = {
            "input_ids": torch.tensor(batch["input_ids"], dtype=torch.long),
            "attention_mask": torch.tensor(batch["attention_mask"], dtype=torch.long),
            "labels": torch.tensor(batch["labels"], dtype=torch.long),
            "target_mask": torch.tensor(batch["target_mask"], dtype=torch.bool),
        }
        if any(it.mm_token_type_ids is not None for it in items):
            out["mm_token_type_ids"] = torch.tensor(batch["mm_token_type_ids"], dtype=torch.long)
        out.update(self._collate_vision([it.vision for it in items]))
        return out

    def _collate_vision(self, visions: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        present = [v for v in visions if v]
        if not present:
            return {}
        keys = present[0].keys()
        if self.family == "idefics":
            # (1, n_images, C, H, W) per sample: pad the image axis with all-zero images, which the
            # model recognises as padding, and give text-only samples only padding.
            n_max = max(v["pixel_values"].shape[1] for v in present)
            out = {}
            for key in keys:
                ref = present[0][key]
                rows = []
                for v in visions:
                    t = v.get(key)
                    shape = (1, n_max, *ref.shape[2:])
                    full = torch.zeros(shape, dtype=ref.dtype)
                    if t is not None:
                        full[:, : t.shape[1]] = t
                    rows.append(full)
                out[key] = torch.cat(rows, dim=0)
            return out
        # LLaVA, Qwen2-VL and most others: images are stacked along the first axis in order.
        return {key: torch.cat([v[key] for v in present], dim=0) for key in keys}

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dev, dtype = self.device, self.dtype
        return {k: v.to(dev, dtype=dtype) if v.is_floating_point() else v.to(dev) for k, v in batch.items()}

    def encode(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """Encode and pad samples for training: ``labels`` on answer tokens, ``target_mask`` on the phrase."""
        return self.collate([self.encode_one(s) for s in samples])

    @staticmethod
    def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in batch.items() if k not in ("labels", "target_mask")}

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Inference in eval mode (no dropout), restoring the model's training flag afterwards."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def generate(
        self,
        samples: Sequence[Sample],
        max_new_tokens: int = 32,
        batch_size: int = 32,
        progress: Any = None,
    ) -> list[str]:
        """Greedy answers to the prompts of ``samples``, batched with left padding."""
        return self.generate_with_limits(samples, max_new_tokens, batch_size, progress)[0]

    @torch.no_grad()
    def generate_with_limits(
        self,
        samples: Sequence[Sample],
        max_new_tokens: int = 32,
        batch_size: int = 32,
        progress: Any = None,
    ) -> tuple[list[str], list[bool]]:
        """Greedy answers, and for each whether it was cut at ``max_new_tokens`` (it never ended)."""
        answers: list[str] = []
        cut: list[bool] = []
        # every token generation stops on (chat models end a turn with e.g. <|im_end|>), and padding
        stops = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        stops = list(stops) if isinstance(stops, (list, tuple)) else [stops]
        ends = {
            t for t in (*stops, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if t is not None
        }
        with self._eval_mode():
            for chunk in _chunks(samples, batch_size):
                batch = self.to_device(
                    self.collate([self.encode_prompt(s) for s in chunk], padding_side="left")
                )
                inputs = self.model_inputs(batch)
                out = self.model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
                new = out[:, inputs["input_ids"].shape[1] :]
                answers.extend(t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True))
                ended = torch.zeros(new.shape[0], dtype=torch.bool, device=new.device)
                for t in ends:
                    ended |= (new == t).any(dim=1)
                cut.extend(bool(c) for c in (~ended & (new.shape[1] >= max_new_tokens)).tolist())
                if progress is not None:
                    progress.update(len(chunk))
        return answers, cut

    @torch.no_grad()
    def answer_logprobs(
        self, samples: Sequence[Sample], batch_size: int = 32, phrase_only: bool = False
    ) -> list[torch.Tensor]:
        """Per-token log-probabilities of each sample's answer turn (1-D tensor per sample); with
        ``phrase_only``, of its ``target_phrase`` tokens only."""
        result: list[torch.Tensor] = []
        with self._eval_mode():
            for chunk in _chunks(samples, batch_size):
                batch = self.to_device(self.encode(chunk))
                logits = self.model(**self.model_inputs(batch)).logits.float()
                lp, mask = token_logprobs(logits, batch["labels"])
                if phrase_only:
                    mask = mask & batch["target_mask"][:, 1:]
                result.extend(lp[i][mask[i]].cpu() for i in range(lp.shape[0]))
        return result

    @torch.no_grad()
    def answer_token_stats(self, samples: Sequence[Sample], batch_size: int = 32) -> list[AnswerTokens]:
        """Per answer token: its id, its log-prob, and the mean and standard deviation of log p over
        the model's own next-token distribution at that position (what Min-K%++ standardises by)."""
        result: list[AnswerTokens] = []
        with self._eval_mode():
            for chunk in _chunks(samples, batch_size):
                batch = self.to_device(self.encode(chunk))
                logits = self.model(**self.model_inputs(batch)).logits.float()
                labels = batch["labels"]
                for i in range(logits.shape[0]):
                    keep = labels[i, 1:] != IGNORE_INDEX
                    logp = torch.log_softmax(logits[i, :-1][keep], dim=-1)
                    ids = labels[i, 1:][keep]
                    probs = logp.exp()
                    mu = (probs * logp).sum(-1)
                    var = (probs * logp.square()).sum(-1) - mu.square()
                    token = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
                    result.append(
                        AnswerTokens(ids.cpu(), token.cpu(), mu.cpu(), var.clamp(min=0).sqrt().cpu())
                    )
        return result

    @torch.no_grad()
    def question_logprobs(self, samples: Sequence[Sample], batch_size: int = 32) -> list[torch.Tensor]:
        """Per-token log-probabilities of each sample's question text, teacher-forced with its image."""
        result: list[torch.Tensor] = []
        with self._eval_mode():
            for chunk in _chunks(samples, batch_size):
                batch = self.to_device(self.collate([self.encode_question(s) for s in chunk]))
                logits = self.model(**self.model_inputs(batch)).logits.float()
                lp, mask = token_logprobs(logits, batch["labels"])
                result.extend(lp[i][mask[i]].cpu() for i in range(lp.shape[0]))
        return result

    @torch.no_grad()
    def prompt_token_logprobs(
        self, samples: Sequence[Sample], token_ids: Sequence[int], batch_size: int = 32
    ) -> list[torch.Tensor]:
        """For each sample, an (L, len(token_ids)) tensor: the log-probability of each given token as
        the next token at every position of the prompt (chat template with the image and the
        generation prompt; image positions included), what C-Dis compares."""
        ids = torch.tensor(list(token_ids), dtype=torch.long)
        rows: list[torch.Tensor] = []
        with self._eval_mode():
            for chunk in _chunks(samples, batch_size):
                batch = self.to_device(
                    self.collate([self.encode_prompt(s) for s in chunk], padding_side="left")
                )
                logits = self.model(**self.model_inputs(batch)).logits.float()
                logp = torch.log_softmax(logits, dim=-1)[..., ids.to(logits.device)].cpu()
                real = batch["attention_mask"].bool().cpu()
                rows.extend(logp[i][real[i]] for i in range(logp.shape[0]))
        return rows


@dataclass
class AnswerTokens:
    """Scores of one answer's tokens under a model (see :meth:`VLM.answer_token_stats`)."""

    ids: torch.Tensor
    logprobs: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor


_NOT_VISION = {
    "input_ids",
    "attention_mask",
    "offset_mapping",
    "text_replacement_offsets",
    "token_type_ids",
    "mm_token_type_ids",
}


def _token_types(out: Any) -> list[int] | None:
    types = out.get("mm_token_type_ids")
    return None if types is None else torch.as_tensor(types)[0].tolist()


def _vision_tensors(out: Any) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in out.items() if k not in _NOT_VISION}


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each label token under the next-token logits; returns (B, T-1) values and mask."""
    shift_logits = logits[:, :-1]
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.clamp(min=0)
    lp = torch.log_softmax(shift_logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return lp * mask, mask


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
