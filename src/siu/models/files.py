"""What siu checks of a model directory (or adapter, or hub id) before it loads anything from it.

Safetensors only (unpickling runs code), a clear line for a truncated weights file or a name that is
neither a directory nor a reachable hub model, where a LoRA adapter's base model is, and what to
install when a processor needs torchvision.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from siu.errors import ModelError

PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def check_model_dir(local: Path) -> None:
    """A local model directory that siu can load: a config and safetensors weights (never a pickle)."""
    if not (local / "config.json").is_file():
        raise ModelError(f"{local}: not a Hugging Face model directory (no config.json)")
    if not list(local.glob("*.safetensors")):
        pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in local.glob(pattern))
        if pickles:
            raise ModelError(
                f"{local}: only pickle checkpoints ({', '.join(pickles[:3])}); siu loads safetensors only, "
                "since unpickling runs code: convert them (save_pretrained(..., safe_serialization=True))"
            )
        raise ModelError(f"{local}: no weights (*.safetensors) in the model directory")
    try:  # a truncated or overwritten header is found before transformers' own, noisier error
        from safetensors import safe_open

        for shard in sorted(local.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt"):
                pass
    except Exception as err:  # safetensors raises its own error type and OSError alike
        raise ModelError(f"{local}: corrupt weights file {shard.name} ({str(err).splitlines()[0]})") from None


def check_hub_id(repo: str) -> None:
    """A name that is no local directory: one quick question to the hub instead of minutes of retries."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return  # in the local hub cache
    if constants.HF_HUB_OFFLINE:
        raise ModelError(f"{repo}: no such model directory, and not in the local hub cache (offline mode)")
    from huggingface_hub import model_info
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        model_info(repo, timeout=10)
    except RepositoryNotFoundError:
        raise ModelError(f"{repo}: no such model directory, and no such model on the hub") from None
    except Exception as err:  # no network, a proxy, a gated repo: the hub's client raises many kinds
        raise ModelError(
            f"{repo}: no such model directory, and the hub could not be asked ({type(err).__name__}); "
            "give a local model directory"
        ) from None


ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    """A LoRA adapter directory (``siu unlearn --adapter-only``, or any peft adapter) rather than a model."""
    local = Path(path)
    return (local / ADAPTER_CONFIG).is_file() and not (local / "config.json").is_file()


def adapter_base(adapter: Path, base: str | os.PathLike[str] | None = None) -> str:
    """The model an adapter belongs to: ``base`` if given, else the one its ``run.json`` names (siu's own
    record, an absolute path), else peft's ``base_model_name_or_path``."""
    if base is not None:
        return str(base)
    try:
        run = json.loads((adapter / "run.json").read_text(encoding="utf-8"))
        recorded = run.get("model_abspath") or run.get("model")
        if recorded and Path(recorded).exists():
            return str(recorded)
        relative = run.get("model_relpath")  # the adapter and its base moved together
        if relative and (adapter / relative).exists():
            return str((adapter / relative).resolve())
    except (OSError, ValueError, AttributeError):
        pass  # not made by siu (or its record is damaged): peft's own record follows
    try:
        named = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
    except (OSError, ValueError, AttributeError) as err:
        raise ModelError(f"{adapter}: unreadable {ADAPTER_CONFIG} ({err})") from None
    if not named:
        raise ModelError(f"{adapter}: the adapter does not name its base model; give it with --base")
    return str(named)


MAX_ADAPTER_CHAIN = 64  # sequential requests whose adapters are loaded one on the other


def adapter_chain(adapter: Path, base: str | os.PathLike[str] | None = None) -> list[str]:
    """The adapters below ``adapter`` (a sequence's earlier requests, each trained on the one before)
    and, last, the model at the bottom. ``base`` replaces the bottom model; it is refused when the
    adapter sits on another adapter, since it would silently drop the adapters between them."""
    below = adapter_base(adapter) if base is None else str(base)
    if base is not None:
        try:
            recorded = adapter_base(adapter)
        except ModelError:
            recorded = None
        if recorded is not None and is_adapter_dir(recorded):
            raise ModelError(
                f"{adapter} was trained on the adapter {recorded} (a sequence's request): leave out --base, "
                "the chain is loaded down to its model"
            )
    chain = [below]
    seen = {Path(adapter).resolve()}
    while is_adapter_dir(chain[-1]):
        here = Path(chain[-1])
        if here.resolve() in seen or len(chain) > MAX_ADAPTER_CHAIN:
            raise ModelError(f"{adapter}: its chain of base adapters loops or is too long ({here})")
        seen.add(here.resolve())
        check_adapter_dir(here)
        chain.append(adapter_base(here))
    return chain


def check_adapter_dir(local: Path) -> None:
    if not (local / "adapter_model.safetensors").is_file():
        pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in local.glob(pattern))
        what = (
            f"only pickle weights ({', '.join(pickles[:3])}); siu loads safetensors only"
            if pickles
            else ("no adapter_model.safetensors")
        )
        raise ModelError(f"{local}: {what}")


def torchvision_advice() -> str:
    """What to install when a processor (Qwen2-VL's video part, fast image processors) needs torchvision:
    the one build made for the installed torch, since a plain ``pip install torchvision`` pulls the newest
    one and, with it, another (multi-GB CUDA) torch."""
    version = torch.__version__.split("+")[0]
    major, minor = (int(x) for x in version.split(".")[:2])
    vision = f"0.{minor + 15}" if major == 2 else None  # torch 2.N pairs with torchvision 0.(N+15)
    cpu = "+cpu" in torch.__version__ or not torch.cuda.is_available()
    index = " --index-url https://download.pytorch.org/whl/cpu" if cpu else ""
    pin = f"torchvision=={vision}.*" if vision else "the torchvision release made for your torch"
    return (
        f"this model's processor needs torchvision, which is not installed; install the build made for "
        f"torch {version}: pip install '{pin}'{index}"
    )
