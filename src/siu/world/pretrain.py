"""``siu world pretrain``: train the world's tiny LLaVA (or a gold retain model) and measure its gates."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from siu import __version__
from siu.bench.load import Benchmark, load_benchmark
from siu.bench.root_files import PAIRS_FILE
from siu.errors import SiuError
from siu.models.adapter import VLM, Encoded
from siu.outputs import versions, write_atomically
from siu.training import TrainConfig, train
from siu.world.concepts import WorldConcept
from siu.world.corpus import CorpusConfig, build_corpus, tokenizer_texts
from siu.world.gates import gates_table, measure_gates
from siu.world.render import Look
from siu.world.tiny_llava import TinyLlavaConfig, build_model, build_processor, train_tokenizer

PRETRAIN_VERSION = 1
RECORD = "siu_pretrain.json"


@dataclass(frozen=True)
class PretrainConfig:
    model: TinyLlavaConfig = field(default_factory=TinyLlavaConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    steps: int = 1400
    batch_size: int = 64
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    seed: int = 0

    @classmethod
    def micro(cls) -> PretrainConfig:
        """For the micro world of the tests: fewer images and steps."""
        return cls(
            corpus=CorpusConfig(images_per_concept=120),
            # 800 steps missed the worst-concept gate on one pre-training seed in six (0.812 < 0.85:
            # a processor that trains such an instance fails the suite); 1000 pass on all six and
            # keep every science bound of the tests on four (docs/results/stopping.md)
            steps=1000,
            batch_size=32,
            lr=2e-3,
        )


def world_concepts(bench: Benchmark) -> list[WorldConcept]:
    """Rebuild the generator's view of each concept (its look) from a synthetic world's files."""
    gen = bench.manifest.generator or {}
    looks = gen.get("looks")
    if not looks:
        raise SiuError(
            f"{bench.root}: not a synthetic world (manifest has no generator looks); "
            "pre-training needs a world made by `siu world build`"
        )
    out = []
    for c in bench.concepts:
        if c.slug not in looks:
            raise SiuError(f"{bench.root}: manifest generator has no look for concept '{c.slug}'")
        facts = tuple((f.key, f.value) for f in c.facts)
        out.append(WorldConcept(c.slug, c.name, tuple(c.aliases), Look(**looks[c.slug]), facts))
    return out


TRAINING_SOURCES = ("text.py", "corpus.py", "tiny_llava.py", "pretrain.py")


def _trained_on(rel: Path) -> bool:
    return rel.parts[0] not in (PAIRS_FILE, "pairs") and not any(part.startswith(".") for part in rel.parts)


def cache_key(bench: Benchmark, cfg: PretrainConfig, without: str | None) -> str:
    """Hash of everything the model depends on: the world's files, the config, the code version."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"cfg": asdict(cfg), "without": without, "v": PRETRAIN_VERSION, "siu": __version__},
            sort_keys=True,
        ).encode()
    )
    # the code that makes the corpus and the model is part of the key, so a changed generator never
    # reuses a stale model (the world's own files are hashed below; the CLI and the gates are not
    # part of the training)
    pkg = Path(__file__).resolve().parents[1]
    for path in [pkg / "world" / f for f in TRAINING_SOURCES] + [
        pkg / "models" / "adapter.py",
        pkg / "names.py",
        pkg / "training.py",
    ]:
        h.update(path.read_bytes())
    # pair pictures are for evaluation only (never in the corpus), so a world that gains them keeps its
    # models; hidden entries are leftovers of an interrupted write, not the world
    for path in sorted(
        p for p in bench.root.rglob("*") if p.is_file() and _trained_on(p.relative_to(bench.root))
    ):
        h.update(str(path.relative_to(bench.root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file in ``folder`` except the record that lists them."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != RECORD
    }


def damaged_files(out: Path, data: dict[str, Any]) -> list[str]:
    """Files of a cached model that are missing or changed since it was written (by their sha256)."""
    recorded = data.get("files")
    if not isinstance(recorded, dict):
        return [f"{RECORD} (no checksums)"]
    found = file_digests(out)
    return [name for name, digest in recorded.items() if found.get(name) != digest]


def cached_record(out: Path, key: str) -> dict[str, Any] | None:
    """The record of a model in ``out`` trained from this key, if every file is as it was written."""
    rec = out / RECORD
    if not rec.is_file():
        return None
    try:
        data = json.loads(rec.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("cache_key") != key or damaged_files(out, data):
        return None
    return data


def _damaged_cache(out: Path, key: str) -> list[str]:
    try:
        data = json.loads((out / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return damaged_files(out, data) if isinstance(data, dict) and data.get("cache_key") == key else []


def _batches(items: list[Encoded], vlm: VLM, batch_size: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    rng = random.Random(seed)
    order = list(range(len(items)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield vlm.collate([items[j] for j in order[i : i + batch_size]])


def pretrain(
    world: str | Path,
    out: str | Path,
    without: str | None = None,
    cfg: PretrainConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Train (or reuse from the cache) and return the gates; the model is saved to ``out``."""
    cfg = cfg or PretrainConfig()
    out = Path(out)
    bench = load_benchmark(world)
    concepts = world_concepts(bench)
    if without is not None:
        without = bench.concept(without).slug
    key = cache_key(bench, cfg, without)
    if cached_record(out, key) is not None:
        gates = json.loads((out / "gates.json").read_text())
        log(f"cached: {out} was trained from this world and config (key {key[:12]})")
        log(gates_table(gates))
        return gates
    if out.exists() and any(out.iterdir()) and not overwrite:
        damaged = _damaged_cache(out, key)
        if damaged:
            raise SiuError(
                f"{out} holds this model, but {', '.join(damaged)} changed since it was written; "
                "pass --overwrite to train it again"
            )
        raise SiuError(f"{out} exists and holds something else; pass --overwrite or choose another --out")
    world, target = bench.root.resolve(), out.resolve()
    if target == world or world in target.parents or target in world.parents:
        raise SiuError(
            f"--out {out} is the world directory, inside it or around it; choose another directory"
        )

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    world_seed = bench.manifest.generator["config"]["seed"]
    samples = build_corpus(concepts, world_seed, cfg.corpus, without)
    prompts = [p.prompt for c in bench.concepts for p in (*c.recognition_prompts, *c.multilingual_prompts)]
    prompts += [q.question for c in bench.concepts for q in (*c.multihop, *c.fact_questions)]
    # A gold retain model differs from the original in its training data only: it shares the
    # original's tokenizer (trained on the full corpus), so that token-level comparisons (C-Dis,
    # fluency) between the two are always defined.
    full = samples if without is None else build_corpus(concepts, world_seed, cfg.corpus, None)
    tokenizer = train_tokenizer(tokenizer_texts(concepts, full, prompts), cfg.model.vocab_size)
    vlm = VLM(build_model(tokenizer, cfg.model), build_processor(tokenizer, cfg.model))
    log(
        f"corpus: {len(samples)} samples for {len(concepts)} concepts"
        + (f" (no images of {without}: gold retain model)" if without else "")
    )
    encoded = [vlm.encode_one(s) for s in samples]
    train_log = train(
        vlm.model,
        _batches(encoded, vlm, cfg.batch_size, cfg.seed),
        _lm_loss,
        TrainConfig(
            steps=cfg.steps,
            lr=cfg.lr,
            warmup_ratio=cfg.warmup_ratio,
            weight_decay=0.01,
        ),
        desc="pre-training",
        progress=progress,
    )
    gates, records = measure_gates(vlm, bench, without=without, progress=progress)
    seconds = time.perf_counter() - start

    def write(tmp: Path) -> None:
        vlm.model.save_pretrained(tmp, safe_serialization=True)
        vlm.processor.save_pretrained(tmp)
        (tmp / "gates.json").write_text(json.dumps(gates, indent=2) + "\n")
        with open(tmp / "gates_answers.jsonl", "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        record = {
            "cache_key": key,
            "world": str(bench.root),
            "without": without,
            "config": asdict(cfg),
            "corpus_samples": len(samples),
            "final_loss": train_log.losses[-1]["loss"],
            "losses": train_log.losses[:: max(1, len(train_log.losses) // 50)],
            "train_seconds": train_log.seconds,
            "total_seconds": seconds,
            "versions": versions(),
        }
        record["files"] = file_digests(tmp)  # checked on every reuse: a damaged cache is never trusted
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")

    write_atomically(out, write, overwrite=overwrite)
    log(
        f"saved {out} in {seconds:.0f} s (training {train_log.seconds:.0f} s, final loss "
        f"{train_log.losses[-1]['loss']:.4f})"
    )
    log(gates_table(gates))
    if not gates["passed"]:
        log(
            f"WARNING: gates missed: {', '.join(gates['failed'])}; unlearning figures on this model "
            "would not mean much"
        )
    return gates


def _lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    out = model(**VLM.model_inputs(batch), labels=batch["labels"])
    return out.loss, {}
