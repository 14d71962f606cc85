"""The optional files at a benchmark's root: ``specificity.json`` (generic questions on pictures of
no concept) and ``pairs.json`` (pictures of two concepts side by side), read like the concept files:
every field checked, each deviation recorded as a :class:`Problem`, every image named kept as an
:class:`ImageRef` for the validator.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from siu.bench.fields import INVALID, MISSING, JsonDoc, Problem, field_names, join_field, kind_of
from siu.bench.images import ImageRef
from siu.bench.schema import Manifest, PairPicture, SpecificityItem

PAIRS_FILE = "pairs.json"  # optional, at the root; its pictures are usually under pairs/

T = TypeVar("T")
ImageItem = TypeVar("ImageItem", SpecificityItem, PairPicture)  # a root-level file's entry with an image


def read_specificity(
    root: Path,
    manifest: Manifest,
    explicit: bool,
    manifest_doc: JsonDoc,
    problems: list[Problem],
    refs: list[ImageRef],
) -> list[SpecificityItem]:
    """The specificity file the manifest names (``explicit``: named by the manifest rather than by
    default, so that its absence is an error rather than a warning), or none."""
    if manifest.specificity is None or not manifest.specificity.strip():
        return []
    path = manifest_doc.inside(root, manifest.specificity, "specificity")
    if path is None:
        return []
    rel = manifest.specificity
    if not path.is_file():
        if explicit:
            manifest_doc.error("specificity", f"file {rel} not found (set null if there is none)")
        else:
            manifest_doc.warn(
                "specificity", f"no {rel}; the specificity metric is skipped (set null to say so explicitly)"
            )
        return []
    doc = JsonDoc(rel, problems)
    data = doc.read(path)
    if data is INVALID:
        return []
    parsed, prefix = _item_list(doc, data, lambda o, w: _parse_specificity(doc, o, w))
    return _with_root_images(doc, root, parsed, prefix, refs)


def _parse_specificity(doc: JsonDoc, obj: dict[str, Any], where: str) -> SpecificityItem:
    doc.unknown(obj, where, field_names(SpecificityItem))
    return SpecificityItem(
        image=doc.text(obj, "image", where),
        question=doc.text(obj, "question", where),
        answers=doc.strings(obj, "answers", where, required=True, nonempty=True),
        kind=doc.text(obj, "kind", where, default="vqa"),
    )


def _item_list(
    doc: JsonDoc, data: Any, parse: Callable[[dict[str, Any], str], T | None]
) -> tuple[list[tuple[int, T]], str]:
    """The entries of a file that is a list of objects, or an object whose "items" is one (room for
    metadata); with the prefix of their field paths ("items" or "")."""
    wrapper = isinstance(data, dict)
    if wrapper:
        doc.unknown(data, "", ["items", "description"])
        data = data.get("items", MISSING)
        if data is MISSING:
            doc.error("items", "missing required field")
            return [], "items"
    label = "items" if wrapper else ""
    if not isinstance(data, list):
        doc.error(label, f"expected a list of objects, got {kind_of(data)}")
        return [], label
    parsed, _ = doc.items({"items": data}, "items", parse, required=True, label=label)
    return parsed, label


def read_pairs(
    root: Path, slugs: list[str], problems: list[Problem], refs: list[ImageRef]
) -> list[PairPicture]:
    """``pairs.json`` if the benchmark has one: pictures of two listed concepts side by side."""
    path = root / PAIRS_FILE
    if not path.is_file():
        return []
    doc = JsonDoc(PAIRS_FILE, problems)
    data = doc.read(path)
    if data is INVALID:
        return []
    listed = set(slugs)
    parsed, prefix = _item_list(doc, data, lambda o, w: _parse_pair(doc, o, w, listed))
    return _with_root_images(doc, root, parsed, prefix, refs)


def _with_root_images(
    doc: JsonDoc, root: Path, parsed: list[tuple[int, ImageItem]], prefix: str, refs: list[ImageRef]
) -> list[ImageItem]:
    """The entries whose ``image`` (relative to the benchmark root) stays inside it; each such image
    is added to ``refs`` for the validator, each other one is an error."""
    items = []
    for i, item in parsed:
        field = f"{prefix}[{i}].image"
        image = doc.inside(root, item.image, field)
        if image is None:
            continue
        refs.append(ImageRef(doc.file, field, image))
        items.append(item)
    return items


def _parse_pair(doc: JsonDoc, obj: dict[str, Any], where: str, slugs: set[str]) -> PairPicture | None:
    doc.unknown(obj, where, field_names(PairPicture))
    before = doc.errors
    image = doc.text(obj, "image", where)
    concepts = doc.strings(obj, "concepts", where, required=True, nonempty=True)
    prompts = doc.strings(obj, "prompts", where, required=True, nonempty=True)
    if doc.errors != before:
        return None
    if len(concepts) != 2 or len(set(concepts)) != 2:
        doc.error(
            join_field(where, "concepts"), f"expected two different concept folder names, got {concepts}"
        )
        return None
    for k, slug in enumerate(concepts):
        if slug not in slugs:
            close = difflib.get_close_matches(slug, sorted(slugs), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            doc.error(
                f"{join_field(where, 'concepts')}[{k}]", f"{slug!r} is not a concept of manifest.json{hint}"
            )
    if len(prompts) != len(concepts):
        doc.error(
            join_field(where, "prompts"),
            f"expected one question per concept ({len(concepts)}), got {len(prompts)}",
        )
    return PairPicture(image, concepts, prompts)
