"""An unlearning run's inputs, read and checked, and the checks of its output: all before any model
is loaded."""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siu.bench.schema import Concept
from siu.errors import SiuError

if TYPE_CHECKING:
    from PIL import Image

    from siu.bench.load import Benchmark


def check_names_encodable(tokenizer: Any, names: Sequence[str]) -> None:
    """Raise :class:`SiuError` if the tokenizer cannot represent a name (unknown token, or lossy)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    for name in names:
        text = name.strip()
        ids = tokenizer.encode(text, add_special_tokens=False)
        if not ids or (unk is not None and unk in ids):
            raise SiuError(
                f"the tokenizer cannot represent the concept name {name!r} (it encodes to the unknown "
                "token), so the vocabulary mask cannot cover it; use --no-vocab-mask or a model whose "
                "tokenizer covers the name"
            )
        back = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if unicodedata.normalize("NFC", back.strip()) != unicodedata.normalize("NFC", text):
            raise SiuError(
                f"the tokenizer cannot represent the concept name {name!r}: it decodes back to "
                f"{back.strip()!r}; use --no-vocab-mask or a model whose tokenizer covers the name"
            )


def concept_without_bench(name: str) -> Concept:
    """A bare concept record for ``--image`` without ``--bench``: facts come from overrides or the model."""
    if not name.strip():
        raise SiuError("--concept must not be empty")
    return Concept(
        name=name.strip(),
        aliases=[],
        category="",
        facts=[],
        special_tokens=[],
        images=[],
        recognition_prompts=[],
        multilingual_prompts=[],
        multihop=[],
        fact_questions=[],
    )


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_writable(out: Path) -> None:
    """Refuse, before any work, an output that could never be written (under a file, on /proc, ...)."""
    resolved = out.resolve()
    if _inside(Path.cwd().resolve(), resolved):
        raise SiuError(f"--out {out} is the current directory or holds it; choose a new directory")
    ancestor = resolved.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SiuError(f"--out {out}: {ancestor} is a file, not a directory")
    try:  # the one sure test of writability is to write: an empty directory, removed at once
        os.rmdir(tempfile.mkdtemp(prefix=".siu-probe-", dir=ancestor))
    except OSError as err:
        raise SiuError(f"--out {out}: cannot write in {ancestor} ({err.strerror or err})") from None


def check_apart(
    out: str | Path, inputs: Sequence[str | Path | None], model_dir: str | Path | None = None
) -> None:
    """Refuse an output that is the input model directory or inside it, or that is an input, inside one
    or around one (inputs that do not exist, or None, are skipped). Commands call it before they claim
    ``out``, so that not even the claim's lock file is put inside an input."""
    resolved = Path(out).resolve()
    if model_dir is not None and Path(model_dir).exists() and _inside(resolved, Path(model_dir).resolve()):
        raise SiuError(f"--out {out} is the input model directory or inside it; choose another directory")
    for path in (Path(p) for p in inputs if p is not None and Path(p).exists()):
        if _inside(path.resolve(), resolved):
            raise SiuError(f"--out {out} contains the input {path}; choose another directory")
        if _inside(resolved, path.resolve()):
            raise SiuError(f"--out {out} is inside the input {path}; choose another directory")


def check_out(out: Path, inputs: Sequence[Path], model_dir: Path | None, overwrite: bool) -> None:
    """Refuse an output directory that would overwrite the model, the benchmark or anything unasked,
    or that could not be written at all."""
    resolved = out.resolve()
    check_apart(out, inputs, model_dir)
    if resolved.exists() and not resolved.is_dir():
        raise SiuError(f"--out {out} exists and is not a directory")
    if resolved.is_dir() and any(resolved.iterdir()) and not overwrite:
        raise SiuError(f"--out {out} exists and is not empty; pass --overwrite or choose another directory")
    check_writable(out)


@dataclass
class Request:
    """What one unlearning request reads, checked: the concepts (the benchmark's records, or made from
    the names alone), those forgotten by earlier requests, one forget image per concept, the data
    overrides, and every path the output must stay clear of."""

    bench: Benchmark | None
    records: list[Concept]
    earlier: list[Concept]
    images: list[Image.Image]
    image_names: list[str]
    overrides: dict[str, Any] | None
    inputs: list[Path]


def read_request(
    model_dir: Path,
    concept: str | Sequence[str],
    image_path: str | Path | Sequence[str | Path] | None,
    bench_path: str | Path | None,
    overrides_path: str | Path | None,
    forgotten_before: Sequence[str] = (),
) -> Request:
    """Read and check a request's inputs, cheapest first; a :class:`SiuError` says what is wrong."""
    from siu.bench.images import open_image
    from siu.bench.load import load_benchmark
    from siu.models.files import adapter_chain, is_adapter_dir
    from siu.unlearn.overrides import load_overrides

    if image_path is None and bench_path is None:
        raise SiuError("give the forget image with --image or a benchmark with --bench")
    bench = load_benchmark(bench_path) if bench_path is not None else None
    asked = [concept] if isinstance(concept, str) else list(concept)
    records = [bench.concept(c) if bench is not None else concept_without_bench(c) for c in asked]
    if not records:
        raise SiuError("no concept to unlearn")
    if len({r.name for r in records}) < len(records):
        raise SiuError(f"a concept is named twice: {', '.join(asked)}")
    earlier = [bench.concept(c) if bench is not None else concept_without_bench(c) for c in forgotten_before]
    again = sorted({r.name for r in records} & {e.name for e in earlier})
    if again:
        raise SiuError(f"{', '.join(again)}: forgotten by an earlier request already")
    if image_path is None:
        paths = []
    else:
        paths = [image_path] if isinstance(image_path, (str, Path)) else list(image_path)
    if paths and len(paths) != len(records):
        raise SiuError(
            f"{len(records)} concepts need {len(records)} forget images (one each), got {len(paths)}"
        )
    if paths:
        images = [open_image(p) for p in paths]
        image_names = [str(p) for p in paths]
    else:
        assert bench is not None
        images = [bench.load_image(r, r.forget_image) for r in records]
        image_names = [str(bench.image_path(r, r.forget_image)) for r in records]
    # without a benchmark or other_facts, target 4 is the model's own answers about well-known subjects
    overrides = load_overrides(overrides_path) if overrides_path else None
    inputs = [model_dir, *([Path(bench_path)] if bench_path else []), *(Path(p) for p in paths)]
    if overrides_path:
        inputs.append(Path(overrides_path))
    if is_adapter_dir(model_dir):  # a sequence's request: every adapter below it is an input too
        inputs += [Path(p) for p in adapter_chain(model_dir) if Path(p).exists()]
    return Request(bench, records, earlier, images, image_names, overrides, inputs)
