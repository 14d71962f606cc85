"""Checking a benchmark directory completely and explaining every problem.

:func:`siu.bench.load.read_benchmark` checks the JSON files (types, required fields and every rule
that needs no pixels); this module adds what needs the image files: each one must decode, and no
photo may appear twice. All problems are collected, grouped by file, never just the first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from siu.bench.fields import Problem
from siu.bench.images import BenchFileError, ImageRef, open_image
from siu.bench.load import load_benchmark, read_benchmark
from siu.errors import BenchmarkError

__all__ = ["Problem", "format_problems", "validate_benchmark"]


def validate_benchmark(path: str | Path, workers: int | None = None) -> list[Problem]:
    """Every problem of the benchmark at ``path``; no error among them means it loads and decodes.

    Images are decoded in ``workers`` threads (PIL's decoders release the GIL), which matters for
    real MMUBench-sized sets of over a thousand photos.
    """
    reading = read_benchmark(path)
    problems = list(reading.problems)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_check_image, reading.images))
    problems.extend(p for p, _ in results if p is not None)
    problems.extend(_duplicate_images(reading.images, [digest for _, digest in results]))
    # Group by file in order of first appearance, keeping each file's problems in reading order.
    order: dict[str, int] = {}
    for p in problems:
        order.setdefault(p.file, len(order))
    return sorted(problems, key=lambda p: order[p.file])


def _check_image(ref: ImageRef) -> tuple[Problem | None, str | None]:
    # the message names the image file too: in a list of 50 images "images[4]" alone sends a user counting
    shown = f"{ref.path.parent.name}/{ref.path.name}"
    try:
        open_image(ref.path)
        digest = hashlib.sha256(ref.path.read_bytes()).hexdigest()
    except BenchFileError as err:
        return Problem(ref.file, ref.field, f"{shown}: {err.reason}"), None
    except OSError as err:  # vanished or unreadable between decoding and hashing
        return Problem(ref.file, ref.field, f"{shown}: cannot read image ({err.strerror or err})"), None
    return None, digest


def _duplicate_images(refs: Sequence[ImageRef], digests: Sequence[str | None]) -> list[Problem]:
    """The same photo twice inflates generality (a test copy of the forget image) or blurs two concepts."""
    problems: list[Problem] = []
    first: dict[str, ImageRef] = {}
    for ref, digest in zip(refs, digests, strict=True):
        if ref.concept is None or digest is None:
            continue
        if digest not in first:
            first[digest] = ref
            continue
        other = first[digest]
        where = other.field if other.file == ref.file else f"{other.file} {other.field}"
        if other.concept == ref.concept and (ref.forget or other.forget):
            problems.append(Problem(ref.file, ref.field, f"same picture as the forget image ({where})"))
        else:
            problems.append(Problem(ref.file, ref.field, f"same picture as {where}", "warning"))
    return problems


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_problems(path: str | Path, problems: Sequence[Problem]) -> str:
    """One line per problem (``file: field: message``) and a summary line."""
    lines = [str(p) for p in problems]
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if errors:
        lines.append(f"INVALID: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}")
        return "\n".join(lines)
    tail = "0 problems" if not warnings else f"0 errors, {_plural(warnings, 'warning')}"
    try:
        bench = load_benchmark(path)
    except BenchmarkError:  # problems were computed elsewhere; still say what we know
        lines.append(f"OK: {tail}")
        return "\n".join(lines)
    counts = f"{_plural(len(bench.concepts), 'concept')}, {_plural(bench.num_images, 'image')}"
    if bench.pairs:
        counts += f", {_plural(len(bench.pairs), 'pair picture')}"
    lines.append(f"OK: {counts}, {tail}")
    return "\n".join(lines)
