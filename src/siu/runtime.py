"""Where a model runs and in what precision: one choice shared by every command that loads a model.

``--device auto`` is the first GPU when there is one, else the CPU; ``--dtype auto`` is bfloat16 on a
GPU that has it (float16 on older GPUs, which the training loop then guards with a loss scaler) and
float32 on the CPU, whatever the checkpoint's own dtype: a float16 checkpoint on the CPU would be slow
and lossy, a float32 one on a GPU twice the memory. ``--device-map auto`` spreads a model that does not
fit one GPU over all of them (inference only: ``siu eval``, the ``hf`` judge).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from siu.errors import SiuError

if TYPE_CHECKING:  # torch is imported when a model is, not when the command line is parsed
    import torch

DTYPES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
DEVICE_MAPS = ("auto",)
LOAD_IN = ("4bit", "8bit")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class Runtime:
    """``device``: auto | cpu | cuda | cuda:N | mps; ``dtype``: auto | float32 | bfloat16 | float16;
    ``device_map``: None or "auto" (weights spread over every GPU by accelerate; inference only);
    ``max_image_side``: the longest image side in pixels a model is given (larger ones are scaled down)."""

    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None
    max_image_side: int | None = None  # None: the family's default (VLM's MAX_IMAGE_SIDE); 0: no cap
    load_in: str | None = None  # "4bit" | "8bit": the base model quantised by bitsandbytes (CUDA only)

    def check(self, training: bool = False) -> Runtime:
        """Raise :class:`SiuError` for a device this machine lacks or a name that means nothing."""
        import torch

        name = DTYPE_ALIASES.get(self.dtype, self.dtype)
        if name != "auto" and name not in DTYPES:
            known = ", ".join(["auto", *DTYPES, *DTYPE_ALIASES])
            raise SiuError(f"--dtype {self.dtype!r}: unknown; known: {known}")
        if self.max_image_side is not None and (
            not isinstance(self.max_image_side, int) or self.max_image_side < 0
        ):
            raise SiuError(
                f"--max-image-side must be a whole number of pixels >= 0, got {self.max_image_side!r}"
            )
        if self.load_in is not None:
            if self.load_in not in LOAD_IN:
                raise SiuError(f"--load-in {self.load_in!r}: use 4bit or 8bit")
            import importlib.util

            if importlib.util.find_spec("bitsandbytes") is None:
                raise SiuError(
                    f"--load-in {self.load_in} needs bitsandbytes, an optional extra: pip install 'siu[quant]'"
                )
        if self.device_map is not None and self.device_map not in DEVICE_MAPS:
            raise SiuError(f"--device-map {self.device_map!r}: only 'auto' is supported")
        if self.device_map is not None and training:
            raise SiuError(
                "--device-map spreads a model over several GPUs for inference only; to train a model "
                "larger than one GPU use a 4-bit base (--load-in 4bit) or several processes"
            )
        try:
            device = torch.device("cpu" if self.device == "auto" else self.device)
        except RuntimeError:
            raise SiuError(f"--device {self.device!r}: not a device (cpu, cuda, cuda:1, mps)") from None
        if device.type == "cuda" and not _cuda():
            raise SiuError(f"--device {self.device}: no CUDA GPU here (torch sees none); use --device cpu")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise SiuError(f"--device {self.device}: this machine has {torch.cuda.device_count()} GPU(s)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise SiuError(f"--device {self.device}: no Apple GPU here; use --device cpu")
        if self.device_map is not None and not _cuda():
            raise SiuError("--device-map auto needs GPUs; this machine has none")
        if self.load_in is not None and self.torch_device.type != "cuda":
            raise SiuError(f"--load-in {self.load_in}: bitsandbytes' kernels need a CUDA GPU (device here: "
                           f"{self.torch_device})")  # fmt: skip
        return self

    def quantization_config(self) -> Any:
        """transformers' ``BitsAndBytesConfig`` for ``load_in`` (None without): NF4 with double
        quantisation and compute in ``torch_dtype`` (QLoRA's set-up), or LLM.int8()."""
        if self.load_in is None:
            return None
        from transformers import BitsAndBytesConfig

        if self.load_in == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=self.torch_dtype,
        )

    @property
    def torch_device(self) -> torch.device:
        import torch

        if self.device == "auto":
            return torch.device("cuda" if _cuda() else "cpu")
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        name = DTYPE_ALIASES.get(self.dtype, self.dtype)
        if name != "auto":
            return getattr(torch, name)  # type: ignore[no-any-return]
        device = self.torch_device
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def record(self) -> dict[str, Any]:
        """What was asked and what it resolved to, as run.json and metrics.json keep it."""
        return {
            "device": str(self.torch_device),
            "dtype": str(self.torch_dtype).removeprefix("torch."),
            "device_map": self.device_map,
            "max_image_side": self.max_image_side,
            "load_in": self.load_in,
            "asked": {"device": self.device, "dtype": self.dtype},
        }


CPU = Runtime(device="cpu", dtype="float32")


DEVICE_HELP = "cpu, cuda, cuda:N or mps (default auto: the first GPU if there is one, else the CPU)"
DTYPE_HELP = (
    "float32, bfloat16 or float16 (default auto: bfloat16 on a GPU that has it, float16 on older GPUs, "
    "float32 on the CPU; the checkpoint's own dtype does not decide)"
)


def add_runtime_options(
    p: argparse.ArgumentParser,
    device_map: bool = False,
    device: tuple[str, str] = ("auto", DEVICE_HELP),
    dtype: tuple[str, str] = ("auto", DTYPE_HELP),
) -> None:
    """``--device`` and ``--dtype`` (and ``--device-map`` for inference) on a command that loads models;
    ``device`` and ``dtype``: another default with its help text (``siu demo``'s CPU)."""
    group = p.add_argument_group("where models run")
    group.add_argument("--device", default=device[0], help=device[1])
    group.add_argument("--dtype", default=dtype[0], help=dtype[1])
    group.add_argument(
        "--max-image-side",
        type=int,
        default=None,
        help="scale images down so that their longer side is at most this many pixels (default: per "
        "family; Qwen2-VL 1024, as it makes one token per 28x28 patch; LLaVA and Idefics3 none, as they "
        "resize themselves; 0: never). Use the same value for unlearning and evaluation",
    )
    group.add_argument(
        "--load-in",
        choices=LOAD_IN,
        default=None,
        help="load the base model quantised by bitsandbytes (CUDA GPUs; pip install 'siu[quant]'): 4bit "
        "(NF4, QLoRA's set-up) or 8bit; LoRA trains in float32 on top, and the result is saved as an "
        "adapter (--adapter-only)",
    )
    if device_map:
        group.add_argument(
            "--device-map",
            choices=DEVICE_MAPS,
            default=None,
            help="auto: spread each model over every GPU (for models larger than one GPU)",
        )


def runtime_from_args(args: argparse.Namespace, training: bool = False) -> Runtime:
    runtime = Runtime(
        device=getattr(args, "device", "auto") or "auto",
        dtype=getattr(args, "dtype", "auto") or "auto",
        device_map=getattr(args, "device_map", None),
        max_image_side=getattr(args, "max_image_side", None),
        load_in=getattr(args, "load_in", None),
    )
    return runtime.check(training=training)
