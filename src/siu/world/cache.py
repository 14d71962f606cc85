"""A synthetic world's pre-trained model and its gold retain models, trained once and cached.

A retain model is pre-trained exactly like the original (same world, same config, same code) but
never sees any picture of one concept: what perfect unlearning of that concept would give. Models
are found again by their pre-training cache key, so one trained by ``siu world pretrain`` (or by
``siu demo``) anywhere directly under ``$SIU_HOME/models`` is reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siu.errors import SiuError
from siu.world.corpus import CorpusConfig
from siu.world.pretrain import RECORD, PretrainConfig, cache_key, cached_record, pretrain
from siu.world.tiny_llava import TinyLlavaConfig


def pretrain_config_of(model_dir: Path) -> PretrainConfig:
    """The configuration a model was pre-trained with (from its siu_pretrain.json)."""
    record = model_dir / RECORD
    try:
        data = json.loads(record.read_text())["config"]
        return PretrainConfig(
            model=TinyLlavaConfig(**data.pop("model")),
            corpus=CorpusConfig(**data.pop("corpus")),
            **data,
        )
    except FileNotFoundError:
        raise SiuError(
            f"{model_dir} was not made by `siu world pretrain` (no {RECORD}), so its retain models cannot "
            "be trained like it; give them with --retain 'DIR/{concept}' or leave them out with --retain none"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SiuError(f"{record}: unreadable pre-training record ({err})") from err


def _find(home: Path, key: str) -> Path | None:
    models = home / "models"
    if models.is_dir():
        for candidate in sorted(models.iterdir()):
            if candidate.is_dir() and cached_record(candidate, key) is not None:
                return candidate
    return None


def _fresh_dir(home: Path, name: str, key: str) -> Path:
    out = home / "models" / name
    return out if not (out.exists() and any(out.iterdir())) else home / "models" / f"{name}-{key[:8]}"


def world_model(world: Path, home: Path, log: Callable[..., Any] = print, progress: bool = True) -> Path:
    """The world's pre-trained tiny LLaVA (default config) under ``home/models``, trained if missing."""
    from siu.bench.load import load_benchmark

    cfg = PretrainConfig()
    key = cache_key(load_benchmark(world), cfg, None)
    found = _find(home, key)
    if found is not None:
        return found
    out = _fresh_dir(home, world.resolve().name, key)
    log(f"pre-training the world's model into {out} (once; cached)")
    pretrain(world, out, cfg=cfg, overwrite=True, progress=progress, log=log)
    return out


def cached_retain_model(world: Path, original: Path, concept_slug: str, home: Path) -> Path | None:
    """The gold retain model of ``concept_slug`` if one is already under ``home/models`` (never trains)."""
    from siu.bench.load import load_benchmark

    try:
        cfg = pretrain_config_of(original)
    except SiuError:
        return None
    return _find(home, cache_key(load_benchmark(world), cfg, concept_slug))


def retain_model(
    world: Path,
    original: Path,
    concept_slug: str,
    home: Path,
    log: Callable[..., Any] = print,
    progress: bool = True,
) -> Path:
    """The gold retain model of ``concept_slug`` for ``original``, trained into ``home/models`` if missing."""
    from siu.bench.load import load_benchmark

    cfg = pretrain_config_of(original)
    bench = load_benchmark(world)
    key = cache_key(bench, cfg, concept_slug)
    found = _find(home, key)
    if found is not None:
        return found
    out = _fresh_dir(home, f"{original.name}-without-{concept_slug}", key)
    log(f"training the gold retain model without {concept_slug} into {out} (once; cached)")
    pretrain(world, out, without=concept_slug, cfg=cfg, overwrite=True, progress=progress, log=log)
    return out


def default_home() -> Path:
    """Where the demo keeps its world and models (override with SIU_HOME)."""
    return Path(os.environ.get("SIU_HOME", Path.home() / ".cache" / "siu"))


def ensure_world_and_model(
    micro: bool = False,
    seed: int = 0,
    home: Path | None = None,
    progress: bool = True,
    log: Callable[..., Any] = print,
) -> tuple[Path, Path, dict]:
    """The demo's world and pre-trained model under ``home`` (default $SIU_HOME), built if missing.

    Returns ``(world_dir, model_dir, gates)``; a cached model (same world, config and code) costs
    seconds. Says what it does through ``log``.
    """
    from siu.world.build import WorldConfig, add_missing_pairs, build_world
    from siu.world.pretrain import PretrainConfig, pretrain

    home = home or default_home()
    tag = f"{'micro' if micro else 'default'}-seed{seed}"
    world, model = home / "worlds" / tag, home / "models" / tag
    if (world / "manifest.json").is_file():
        log(f"[world] cached at {world}")
        if add_missing_pairs(world):
            log(f"[world] drew its pair pictures (new since it was built): {world / 'pairs'}")
    else:
        log(f"[world] building {world}")
        build_world(WorldConfig.micro(seed) if micro else WorldConfig(seed), world, progress=progress)
    log(f"[model] the tiny LLaVA pre-trained on it: {model}")
    cfg = PretrainConfig.micro() if micro else PretrainConfig()
    gates = pretrain(world, model, cfg=cfg, overwrite=True, progress=progress, log=log)
    return world, model, gates
