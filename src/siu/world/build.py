"""``siu world build``: write the synthetic world as an MMUBench-format benchmark directory."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from siu.bench.root_files import PAIRS_FILE
from siu.bench.schema import (
    QA,
    Concept,
    Fact,
    ImageRecord,
    Manifest,
    PairPicture,
    RecognitionPrompt,
    SpecificityItem,
)
from siu.errors import SiuError
from siu.outputs import write_atomically
from siu.world.concepts import WorldConcept, make_concepts
from siu.world.render import render, render_pair
from siu.world.text import (
    FACT_HELDOUT,
    FACT_SLOTS,
    MULTIHOP_REFS,
    MULTIHOP_TEMPLATES_PER_SLOT,
    MULTILINGUAL,
    NAME_PROMPTS,
    NOUNS,
    VQA_BACKGROUND,
    VQA_MAIN,
    YESNO_PROMPTS,
)

GENERATOR_VERSION = 1
PAIR_PARTNERS = (
    2  # partners drawn per concept, from other categories (a concept is in about twice as many pairs)
)
PAIR_IMAGES = 4  # pictures per pair, the sides alternating
# a pair picture asks for one concept by its category ("the character"): the world's name prompts that do
PAIR_PROMPTS = [t for t, _ in NAME_PROMPTS if "{noun}" in t][:2]


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    concepts: int = 24
    images: int = 50  # benchmark images per concept; image 0 is the forget image
    image_size: int = 64
    specificity_per_concept: int = 4

    @classmethod
    def micro(cls, seed: int = 0) -> WorldConfig:
        """A handful of concepts with few images: for tests."""
        return cls(seed=seed, concepts=4, images=12, image_size=64, specificity_per_concept=8)


def image_description(wc: WorldConcept, background: str) -> str:
    return f"{wc.look.describe()} on a {background} background"


def benchmark_concept(wc: WorldConcept, backgrounds: list[str]) -> Concept:
    noun = NOUNS[wc.category]
    names = [wc.name, *wc.aliases]
    recognition = [
        RecognitionPrompt(t.format(noun=noun), "name", names, heldout=h) for t, h in NAME_PROMPTS
    ] + [
        RecognitionPrompt(t.format(noun=noun, name=wc.name), "yesno", ["yes"], heldout=h)
        for t, h in YESNO_PROMPTS
    ]
    multilingual = [
        RecognitionPrompt(t, "name", names, language=lang, heldout=h)
        for lang, (templates, _) in MULTILINGUAL.items()
        for t, h in templates
    ]
    facts, multihop, fact_questions = [], [], []
    for key, questions, answer, _ in FACT_SLOTS:
        value = wc.fact(key)
        facts.append(
            Fact(key, questions[0].format(ref=wc.name), answer.format(name=wc.name, value=value), value)
        )
        for i, q in enumerate(questions):
            fact_questions.append(QA(q.format(ref=wc.name), [value], key=key, heldout=i in FACT_HELDOUT))
        seen = [r for r, held in MULTIHOP_REFS if not held]
        unseen = [r for r, held in MULTIHOP_REFS if held]
        for j, q in enumerate(questions[:MULTIHOP_TEMPLATES_PER_SLOT]):
            # two seen phrasings of the reference (rotating) and every held-out one
            refs = [(seen[(2 * j + k) % len(seen)], False) for k in range(2)] + [(r, True) for r in unseen]
            for ref, held in refs:
                multihop.append(QA(q.format(ref=ref.format(noun=noun)), [value], key=key, heldout=held))
    images = [
        ImageRecord(f"images/{i:03d}.png", forget=i == 0, description=image_description(wc, bg))
        for i, bg in enumerate(backgrounds)
    ]
    first = wc.name.split()[0]
    feature = {
        "person": "hair",
        "cartoon": "body",
        "logo": "emblem",
        "object": wc.look.variant,
        "style": "painting",
    }
    special = [wc.name, first, wc.aliases[-1], wc.fact("origin"), f"{wc.look.primary} {feature[wc.category]}"]
    return Concept(
        name=wc.name,
        aliases=list(wc.aliases),
        category=wc.category,
        facts=facts,
        special_tokens=special,
        images=images,
        recognition_prompts=recognition,
        multilingual_prompts=multilingual,
        multihop=multihop,
        fact_questions=fact_questions,
        appearance=wc.look.describe(),
        slug=wc.slug,
    )


def specificity_items(wc: WorldConcept, backgrounds: list[str], n: int) -> list[SpecificityItem]:
    """Generic colour questions on the concept's test images (never the forget image)."""
    noun = NOUNS[wc.category]
    items = []
    for k in range(n):
        idx = 1 + k % (len(backgrounds) - 1)
        path = f"concepts/{wc.slug}/images/{idx:03d}.png"
        if k % 2 == 0:
            q = VQA_BACKGROUND[(k // 2) % len(VQA_BACKGROUND)][0]
            items.append(SpecificityItem(path, q, [backgrounds[idx]], kind="background_colour"))
        else:
            q = VQA_MAIN[(k // 2) % len(VQA_MAIN)][0].format(noun=noun)
            items.append(SpecificityItem(path, q, [wc.look.primary], kind="main_colour"))
    return items


def concept_pairs(concepts: list[WorldConcept], seed: int) -> list[tuple[WorldConcept, WorldConcept]]:
    """Pairs of concepts of different categories: ``PAIR_PARTNERS`` drawn for each concept."""
    rng = random.Random(f"siu-world:{seed}:pairs")
    pairs: list[tuple[WorldConcept, WorldConcept]] = []
    seen: set[frozenset[str]] = set()
    for a in concepts:
        others = [b for b in concepts if b.category != a.category]
        for b in rng.sample(others, min(PAIR_PARTNERS, len(others))):
            if frozenset((a.slug, b.slug)) not in seen:
                seen.add(frozenset((a.slug, b.slug)))
                pairs.append((a, b))
    return pairs


def write_pairs(root: Path, concepts: list[WorldConcept], seed: int, size: int) -> int:
    """Draw the pair pictures into ``root/pairs/`` and list them in ``root/pairs.json``; return how many.

    They come from their own random streams, so adding them changes no other file of the world; they
    are for evaluation only (never in the pre-training corpus).
    """
    folder = root / "pairs"
    folder.mkdir()
    items = []
    for p, (a, b) in enumerate(concept_pairs(concepts, seed)):
        for i in range(PAIR_IMAGES):
            left, right = (a, b) if i % 2 == 0 else (b, a)
            file = f"pairs/{p:03d}-{i}.png"
            rng = random.Random(f"siu-world:{seed}:pair:{left.slug}:{right.slug}:{i}")
            render_pair(left.look, right.look, rng, size).save(root / file, format="PNG")
            prompt = PAIR_PROMPTS[(i // 2) % len(PAIR_PROMPTS)]
            items.append(
                PairPicture(
                    file,
                    [left.slug, right.slug],
                    [prompt.format(noun=NOUNS[c.category]) for c in (left, right)],
                )
            )
    description = (
        "Two concepts side by side (left, right); each prompt asks for the concept in the same position."
    )
    _write_json(root / PAIRS_FILE, {"description": description, "items": [asdict(x) for x in items]})
    return len(items)


def add_missing_pairs(world: Path) -> bool:
    """Draw the pair pictures into a world built before siu drew them (a cache of ours, never a user's
    benchmark: only a world whose manifest says ``siu world build`` made it). True if it added them."""
    manifest = json.loads((world / "manifest.json").read_text(encoding="utf-8"))
    generator = manifest.get("generator") or {}
    if (world / PAIRS_FILE).exists() or generator.get("tool") != "siu world build":
        return False
    cfg = WorldConfig(**generator["config"])
    # what a killed earlier attempt left: pictures without their list, or a half-drawn temp folder
    shutil.rmtree(world / "pairs", ignore_errors=True)
    for stale in world.glob(".pairs-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=".pairs-", dir=world) as tmp:
        write_pairs(Path(tmp), make_concepts(cfg.seed, cfg.concepts), cfg.seed, cfg.image_size)
        (Path(tmp) / "pairs").rename(world / "pairs")
        (Path(tmp) / PAIRS_FILE).rename(world / PAIRS_FILE)  # last: a world with pairs.json has every picture
    return True


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_world(cfg: WorldConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the benchmark to ``out`` atomically (built in a sibling temp dir, then renamed)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SiuError(f"{out} already exists and is not empty; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    concepts = make_concepts(cfg.seed, cfg.concepts)

    def write(tmp: Path) -> None:
        spec: list[SpecificityItem] = []
        bar = tqdm(concepts, desc="drawing concepts", unit="concept", disable=not progress)
        for wc in bar:
            cdir = tmp / "concepts" / wc.slug / "images"
            cdir.mkdir(parents=True)
            backgrounds = []
            for i in range(cfg.images):
                # benchmark images come from their own random stream: pre-training never draws them
                img, bg = render(
                    wc.look, random.Random(f"siu-world:{cfg.seed}:bench:{wc.slug}:{i}"), cfg.image_size
                )
                img.save(cdir / f"{i:03d}.png", format="PNG")
                backgrounds.append(bg)
            record = benchmark_concept(wc, backgrounds)
            _write_json(tmp / "concepts" / wc.slug / "concept.json", record.to_json())
            spec.extend(specificity_items(wc, backgrounds, cfg.specificity_per_concept))
        _write_json(tmp / "specificity.json", {"items": [asdict(s) for s in spec]})
        write_pairs(tmp, concepts, cfg.seed, cfg.image_size)
        manifest = Manifest(
            name=f"synthetic-world-seed{cfg.seed}",
            concepts=[wc.slug for wc in concepts],
            description="Synthetic MMUBench-format world generated by `siu world build`.",
            languages=["en", *MULTILINGUAL],
            generator={
                "tool": "siu world build",
                "version": GENERATOR_VERSION,
                "config": asdict(cfg),
                "looks": {wc.slug: asdict(wc.look) for wc in concepts},
            },
        )
        _write_json(tmp / "manifest.json", manifest.to_json())

    write_atomically(out, write, overwrite=overwrite)
    return out
