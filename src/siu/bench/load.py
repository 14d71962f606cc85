"""Reading a benchmark directory into the typed records of :mod:`siu.bench.schema`.

One reader serves both the loader and the validator: it checks every field and records a
:class:`Problem` for each deviation instead of stopping. :func:`load_benchmark` refuses a benchmark
with any error, so downstream code can trust every type; :mod:`siu.bench.validate` lists them all
and also decodes the images, which loading never does because it is slow.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from PIL import Image

from siu.bench.fields import (
    INVALID,
    MISSING,
    JsonDoc,
    Problem,
    field_names,
    folded,
    invisible_characters,
    join_field,
    kind_of,
)
from siu.bench.images import ImageRef, open_image, resolve_inside
from siu.bench.root_files import read_pairs, read_specificity
from siu.bench.schema import (
    CATEGORIES,
    FORMAT_NAME,
    QA,
    Concept,
    Fact,
    ImageRecord,
    Manifest,
    PairPicture,
    PromptType,
    RecognitionPrompt,
    SpecificityItem,
)
from siu.errors import BenchmarkError

MANIFEST_FILE = "manifest.json"
CONCEPTS_DIR = "concepts"
CONCEPT_FILE = "concept.json"
SUPPORTED_VERSIONS = (1,)
MMUBENCH_MIN_IMAGES = 50  # the paper has at least 50 images per concept
MAX_SPECIAL_TOKENS = 10  # MMUBench uses 4-5; many more dilutes C-Dis
PROMPT_TYPES = ("name", "yesno")

T = TypeVar("T")


@dataclass
class Benchmark:
    root: Path
    manifest: Manifest
    concepts: list[Concept]
    specificity: list[SpecificityItem] = dataclasses.field(default_factory=list)
    pairs: list[PairPicture] = dataclasses.field(default_factory=list)

    def concept(self, name_or_slug: str) -> Concept:
        """The concept whose name, alias or folder name is ``name_or_slug`` (case-insensitive)."""
        wanted = folded(name_or_slug)
        for concept in self.concepts:
            if wanted in {folded(s) for s in (*concept.names, concept.slug)}:
                return concept
        known: dict[str, str] = {}
        for concept in self.concepts:
            for spelling in (*concept.names, concept.slug):
                known.setdefault(folded(spelling), concept.name)
        close = difflib.get_close_matches(wanted, list(known), n=5, cutoff=0.6)
        suggestions = list(dict.fromkeys(known[c] for c in close))
        if suggestions:
            raise BenchmarkError(f"unknown concept {name_or_slug!r}; did you mean: {', '.join(suggestions)}?")
        names = [c.name for c in self.concepts]
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in total)" if len(names) > 8 else "")
        raise BenchmarkError(f"unknown concept {name_or_slug!r}; available: {shown or 'none'}")

    def concept_dir(self, concept: Concept) -> Path:
        return self.root / CONCEPTS_DIR / concept.slug

    def image_path(self, concept: Concept, record: ImageRecord) -> Path:
        return resolve_inside(self.concept_dir(concept), record.file)

    def load_image(self, concept: Concept, record: ImageRecord) -> Image.Image:
        return open_image(self.image_path(concept, record))

    def specificity_image_path(self, item: SpecificityItem) -> Path:
        return resolve_inside(self.root, item.image)

    def load_specificity_image(self, item: SpecificityItem) -> Image.Image:
        return open_image(self.specificity_image_path(item))

    def load_pair_image(self, item: PairPicture) -> Image.Image:
        return open_image(resolve_inside(self.root, item.image))

    @property
    def num_images(self) -> int:
        return sum(len(c.images) for c in self.concepts)


@dataclass
class Reading:
    """What :func:`read_benchmark` found: the records that parsed, every problem, every image named."""

    benchmark: Benchmark | None
    problems: list[Problem]
    images: list[ImageRef]


def load_benchmark(path: str | Path) -> Benchmark:
    """Read a benchmark directory (or its ``manifest.json``); raise :class:`BenchmarkError` on any error.

    Warnings (such as fewer than 50 images per concept) do not stop loading. Images are not decoded.
    """
    if not Path(path).exists():
        raise BenchmarkError(f"benchmark directory {path} not found")
    reading = read_benchmark(path)
    errors = [p for p in reading.problems if p.severity == "error"]
    if errors or reading.benchmark is None:
        more = ""
        if len(errors) > 1:
            more = f" (and {len(errors) - 1} more; `siu bench validate {path}` lists them all)"
        first = errors[0] if errors else "unreadable"
        raise BenchmarkError(f"benchmark {path}: {first}{more}")
    return reading.benchmark


def read_benchmark(path: str | Path) -> Reading:
    """Read and check everything but image contents, collecting problems instead of raising."""
    root = Path(path)
    if root.name == MANIFEST_FILE and root.is_file():
        root = root.parent
    problems: list[Problem] = []
    images: list[ImageRef] = []
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "not found"
        problems.append(Problem(str(root), "", f"benchmark directory {what}"))
        return Reading(None, problems, images)
    manifest_doc = JsonDoc(MANIFEST_FILE, problems)
    if not (root / MANIFEST_FILE).is_file():
        manifest_doc.error(
            "", "file not found (a benchmark directory holds manifest.json; see docs/FORMAT.md)"
        )
        return Reading(None, problems, images)
    data = manifest_doc.read(root / MANIFEST_FILE)
    if data is INVALID:
        return Reading(None, problems, images)
    manifest, specificity_explicit, listed = _parse_manifest(manifest_doc, data)
    if manifest is None:
        return Reading(None, problems, images)

    concepts: list[Concept] = []
    for index, slug in listed:
        concept = _read_concept(root, slug, index, manifest_doc, problems, images)
        if concept is not None:
            concepts.append(concept)
    _check_unlisted_folders(root, manifest.concepts, problems)
    _check_unique_names(concepts, problems)
    specificity = read_specificity(root, manifest, specificity_explicit, manifest_doc, problems, images)
    pairs = read_pairs(root, manifest.concepts, problems, images)
    return Reading(Benchmark(root, manifest, concepts, specificity, pairs), problems, images)


def write_benchmark_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON atomically; identical data gives byte-identical files.

    The text goes to a temporary file in the same directory, is fsynced and then renamed over
    ``path``, so a reader never sees half a file, even after a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600, too strict for a shared data set
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # persist the rename itself (POSIX only)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _parse_manifest(doc: JsonDoc, data: Any) -> tuple[Manifest | None, bool, list[tuple[int, str]]]:
    """The manifest (None if this is not a benchmark of this format at all), whether it names its
    specificity file explicitly, and the usable concept folders with their index in ``concepts``."""
    if not isinstance(data, dict):
        doc.error("", f"expected a JSON object, got {kind_of(data)}")
        return None, False, []
    fmt = data.get("format", MISSING)
    if fmt is MISSING:
        doc.error("format", f'missing required field (must be "{FORMAT_NAME}")')
    elif fmt != FORMAT_NAME:
        # Another format: checking its fields against ours would only produce noise.
        doc.error("format", f'expected "{FORMAT_NAME}", got {json.dumps(fmt)}')
        return None, False, []
    version = data.get("version", MISSING)
    supported = ", ".join(map(str, SUPPORTED_VERSIONS))
    if version is MISSING:
        doc.error("version", f"missing required field (supported: {supported})")
    elif not isinstance(version, int) or isinstance(version, bool):
        doc.error("version", f"expected an integer, got {kind_of(version)}")
        return None, False, []
    elif version not in SUPPORTED_VERSIONS:
        doc.error("version", f"unsupported version {version}; this siu reads version {supported}")
        return None, False, []

    name = doc.text(data, "name", "")
    doc.strings(data, "concepts", "", required=True, nonempty=True)  # reports bad entries
    description = doc.optional_text(data, "description", "") or ""
    languages = doc.strings(data, "languages", "", required=False, nonempty=False) or ["en"]
    specificity_explicit = "specificity" in data
    specificity = doc.optional_text(data, "specificity", "") if specificity_explicit else "specificity.json"
    generator = data.get("generator")
    if generator is not None and not isinstance(generator, dict):
        doc.error("generator", f"expected an object or null, got {kind_of(generator)}")
        generator = None
    doc.unknown(data, "", field_names(Manifest))

    seen: dict[str, int] = {}
    usable: list[tuple[int, str]] = []
    raw = data.get("concepts")
    for i, slug in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(slug, str) or not slug.strip():
            continue  # already reported by strings()
        field = f"concepts[{i}]"
        if slug in (".", "..") or "/" in slug or "\\" in slug or slug.startswith("."):
            doc.error(field, f"{slug!r} is not a plain folder name under concepts/")
            continue
        key = slug.casefold()  # folders differing only in case collide on macOS and Windows
        if key in seen:
            doc.error(field, f"concept folder {slug!r} is listed twice (also concepts[{seen[key]}])")
            continue
        seen[key] = i
        usable.append((i, slug))
    manifest = Manifest(
        name=name,
        concepts=[slug for _, slug in usable],
        format=FORMAT_NAME,
        version=version if isinstance(version, int) else SUPPORTED_VERSIONS[-1],
        description=description,
        languages=languages,
        specificity=specificity,
        generator=generator,
    )
    return manifest, specificity_explicit, usable


def _read_concept(
    root: Path, slug: str, index: int, manifest_doc: JsonDoc, problems: list[Problem], images: list[ImageRef]
) -> Concept | None:
    folder = root / CONCEPTS_DIR / slug
    # against the benchmark root: a concepts/ or a concept folder linked elsewhere is outside too
    where = f"concepts[{index}]"
    if manifest_doc.inside(root / CONCEPTS_DIR, slug, where) is None:
        return None
    if manifest_doc.inside(root, f"{CONCEPTS_DIR}/{slug}", where) is None:
        return None
    if not folder.is_dir():
        manifest_doc.error(f"concepts[{index}]", f"concept folder {CONCEPTS_DIR}/{slug} not found")
        return None
    rel = f"{CONCEPTS_DIR}/{slug}/{CONCEPT_FILE}"
    doc = JsonDoc(rel, problems)
    if not (folder / CONCEPT_FILE).is_file():
        doc.error("", "file not found (every concept folder holds concept.json)")
        return None
    if doc.inside(root, rel, "") is None:
        return None
    data = doc.read(folder / CONCEPT_FILE)
    if data is INVALID:
        return None
    if not isinstance(data, dict):
        doc.error("", f"expected a JSON object, got {kind_of(data)}")
        return None
    return _parse_concept(doc, data, slug, folder, images)


def _parse_concept(
    doc: JsonDoc, data: dict[str, Any], slug: str, folder: Path, refs: list[ImageRef]
) -> Concept:
    name = doc.text(data, "name", "")
    aliases = doc.strings(data, "aliases", "", required=False, nonempty=False)
    category = doc.text(data, "category", "")
    if category.strip() and category not in CATEGORIES:
        close = difflib.get_close_matches(category.casefold(), CATEGORIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        doc.error(
            "category", f"unknown category {category!r}; expected one of: {', '.join(CATEGORIES)}{hint}"
        )
    names = [n for n in (name, *aliases) if n.strip()]

    facts, _ = doc.items(data, "facts", lambda o, w: _parse_fact(doc, o, w), required=False)
    special_tokens = doc.strings(data, "special_tokens", "", required=True, nonempty=True)
    images, images_complete = doc.items(data, "images", lambda o, w: _parse_image(doc, o, w), required=True)
    recognition, _ = doc.items(
        data, "recognition_prompts", lambda o, w: _parse_prompt(doc, o, w, names), required=True
    )
    multilingual, _ = doc.items(
        data, "multilingual_prompts", lambda o, w: _parse_prompt(doc, o, w, names), required=False
    )
    multihop, _ = doc.items(data, "multihop", lambda o, w: _parse_qa(doc, o, w), required=False)
    fact_questions, _ = doc.items(data, "fact_questions", lambda o, w: _parse_qa(doc, o, w), required=False)
    appearance = doc.optional_text(data, "appearance", "")
    doc.unknown(data, "", field_names(Concept, drop=("slug",)))

    # Rules beyond types. A name that displays as another (a bidi override, a zero-width space) is
    # refused; every name is kept in NFC, so that its NFC and NFD spellings are one name.
    for field, spelling in [("name", name), *((f"aliases[{i}]", a) for i, a in enumerate(aliases))]:
        hidden = invisible_characters(spelling)
        if hidden:
            doc.error(field, f"{spelling!r} contains invisible or control characters: {', '.join(hidden)}")
    name = unicodedata.normalize("NFC", name)
    aliases = [unicodedata.normalize("NFC", a) for a in aliases]
    seen_names: dict[str, str] = {}
    for field, spelling in [("name", name), *((f"aliases[{i}]", a) for i, a in enumerate(aliases))]:
        key = folded(spelling)
        if key and key in seen_names:
            doc.warn(field, f"{spelling!r} repeats {seen_names[key]}")
        elif key:
            seen_names[key] = field
    if isinstance(data.get("recognition_prompts"), list) and not data["recognition_prompts"]:
        doc.error("recognition_prompts", "must not be empty (efficacy and generality are measured with them)")
    if len(special_tokens) > MAX_SPECIAL_TOKENS:
        doc.warn(
            "special_tokens",
            f"{len(special_tokens)} tokens; MMUBench uses 4-5 (at most {MAX_SPECIAL_TOKENS})",
        )
    for key, purpose in (
        ("multilingual_prompts", "the multilingual jailbreak"),
        ("multihop", "the multi-hop jailbreak"),
        ("fact_questions", "membership inference"),
    ):
        if not data.get(key):
            doc.warn(key, f"none given; {purpose} cannot be measured for this concept")
    _check_images(doc, images, images_complete, slug, folder, refs)

    return Concept(
        name=name,
        aliases=aliases,
        category=category,
        facts=[f for _, f in facts],
        special_tokens=special_tokens,
        images=[img for _, img in images],
        recognition_prompts=[p for _, p in recognition],
        multilingual_prompts=[p for _, p in multilingual],
        multihop=[q for _, q in multihop],
        fact_questions=[q for _, q in fact_questions],
        appearance=appearance,
        slug=slug,
    )


def _check_images(
    doc: JsonDoc,
    images: list[tuple[int, ImageRecord]],
    complete: bool,
    slug: str,
    folder: Path,
    refs: list[ImageRef],
) -> None:
    if complete:  # counting a partly broken list would report errors that are not there
        forget = [i for i, img in images if img.forget]
        if not forget:
            doc.error("images", "no image has forget=true; exactly one must be the forget image")
        elif len(forget) > 1:
            listed = ", ".join(f"images[{i}]" for i in forget)
            doc.error("images", f"{len(forget)} images have forget=true ({listed}); exactly one must")
        if len(images) < 2:
            doc.error(
                "images", f"{len(images)} image(s); at least 2 are needed (the forget image and a test image)"
            )
        elif len(images) < MMUBENCH_MIN_IMAGES:
            doc.warn(
                "images",
                f"only {len(images)} images; MMUBench has at least {MMUBENCH_MIN_IMAGES} per concept",
            )
    seen: dict[Path, int] = {}
    for i, img in images:
        field = f"images[{i}].file"
        path = doc.inside(folder, img.file, field)
        if path is None:
            continue
        if path in seen:
            doc.error(field, f"same file as images[{seen[path]}]; each image is listed once")
            continue
        seen[path] = i
        refs.append(ImageRef(doc.file, field, path, slug, img.forget))


def _parse_fact(doc: JsonDoc, obj: dict[str, Any], where: str) -> Fact:
    doc.unknown(obj, where, field_names(Fact))
    return Fact(
        key=doc.text(obj, "key", where),
        question=doc.text(obj, "question", where),
        answer=doc.text(obj, "answer", where),
        value=doc.text(obj, "value", where),
    )


def _parse_image(doc: JsonDoc, obj: dict[str, Any], where: str) -> ImageRecord:
    doc.unknown(obj, where, field_names(ImageRecord))
    return ImageRecord(
        file=doc.text(obj, "file", where),
        forget=doc.flag(obj, "forget", where),
        description=doc.optional_text(obj, "description", where),
    )


def _parse_prompt(doc: JsonDoc, obj: dict[str, Any], where: str, names: list[str]) -> RecognitionPrompt:
    doc.unknown(obj, where, field_names(RecognitionPrompt))
    prompt = doc.text(obj, "prompt", where)
    kind = doc.text(obj, "type", where)
    targets = doc.strings(obj, "targets", where, required=True, nonempty=True)
    language = doc.text(obj, "language", where, default="en")
    heldout = doc.flag(obj, "heldout", where)
    keys = {folded(t) for t in targets}
    if kind.strip() and kind not in PROMPT_TYPES:
        doc.error(join_field(where, "type"), f"expected 'name' or 'yesno', got {kind!r}")
    elif kind == "yesno" and targets and "yes" not in keys:
        doc.error(join_field(where, "targets"), "a yesno prompt's targets must include 'yes'")
    elif kind == "name" and targets and names and not keys & {folded(n) for n in names}:
        doc.error(
            join_field(where, "targets"),
            "a name prompt's targets must include the concept's name or an alias",
        )
    return RecognitionPrompt(
        prompt=prompt, type=cast(PromptType, kind), targets=targets, language=language, heldout=heldout
    )


def _parse_qa(doc: JsonDoc, obj: dict[str, Any], where: str) -> QA:
    doc.unknown(obj, where, field_names(QA))
    return QA(
        question=doc.text(obj, "question", where),
        answers=doc.strings(obj, "answers", where, required=True, nonempty=True),
        key=doc.optional_text(obj, "key", where),
        heldout=doc.flag(obj, "heldout", where),
    )


def _check_unlisted_folders(root: Path, listed: list[str], problems: list[Problem]) -> None:
    folder = root / CONCEPTS_DIR
    if not folder.is_dir():
        return
    known = {s.casefold() for s in listed}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and entry.name.casefold() not in known:
            problems.append(
                Problem(
                    f"{CONCEPTS_DIR}/{entry.name}",
                    "",
                    "folder not listed in manifest.json; ignored",
                    "warning",
                )
            )


def _check_unique_names(concepts: list[Concept], problems: list[Problem]) -> None:
    """A name or alias must identify one concept: matching an answer to a concept depends on it.

    Names are registered before aliases, so a clash between a name and an alias is reported at the
    alias, which is what usually needs to change.
    """
    owner: dict[str, tuple[Concept, str]] = {}
    spellings = [(c, "name", c.name) for c in concepts]
    spellings += [(c, f"aliases[{i}]", a) for c in concepts for i, a in enumerate(c.aliases)]
    for concept, where, spelling in spellings:
        key = folded(spelling)
        if not key:
            continue
        if key in owner and owner[key][0] is not concept:
            other, other_field = owner[key]
            what = "the name" if other_field == "name" else "an alias"
            problems.append(
                Problem(
                    f"{CONCEPTS_DIR}/{concept.slug}/{CONCEPT_FILE}",
                    where,
                    f"{spelling!r} is also {what} of concept {other.name!r} ({CONCEPTS_DIR}/{other.slug})",
                )
            )
        else:
            owner.setdefault(key, (concept, where))
