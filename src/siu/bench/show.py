"""Listing the concepts of a benchmark as a text table or as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from siu.bench.load import Benchmark, load_benchmark

_COLUMNS = (
    ("name", "name"),
    ("category", "category"),
    ("images", "images"),
    ("recognition", "recognition_prompts"),
    ("multilingual", "multilingual_prompts"),
    ("multihop", "multihop"),
    ("fact questions", "fact_questions"),
)


def concept_summaries(bench: Benchmark) -> list[dict[str, Any]]:
    """One JSON-ready object per concept: identity, forget image and the size of every section."""
    return [
        {
            "name": c.name,
            "slug": c.slug,
            "category": c.category,
            "aliases": list(c.aliases),
            "images": len(c.images),
            "forget_image": c.forget_image.file,
            "recognition_prompts": len(c.recognition_prompts),
            "multilingual_prompts": len(c.multilingual_prompts),
            "multihop": len(c.multihop),
            "fact_questions": len(c.fact_questions),
            "facts": len(c.facts),
            "special_tokens": list(c.special_tokens),
        }
        for c in bench.concepts
    ]


def show_benchmark(path: str | Path, as_json: bool = False) -> str:
    """A table of the concepts (header line with the benchmark name), or a JSON list of objects."""
    bench = load_benchmark(path)
    rows = concept_summaries(bench)
    if as_json:
        return json.dumps(rows, indent=2, ensure_ascii=False)
    name = bench.manifest.name
    table = [[title for title, _ in _COLUMNS]]
    table += [[str(row[key]) for _, key in _COLUMNS] for row in rows]
    totals = ["total", ""] + [str(sum(row[key] for row in rows)) for _, key in _COLUMNS[2:]]
    table.append(totals)
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]

    def line(cells: list[str]) -> str:
        # Text columns left-aligned, counts right-aligned so digits line up.
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [f"{name}: {len(rows)} concept{'' if len(rows) == 1 else 's'} ({Path(path)})", ""]
    out.append(line(table[0]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in table[1:-1])
    out.append("  ".join("-" * w for w in widths))
    out.append(line(table[-1]))
    return "\n".join(out)
