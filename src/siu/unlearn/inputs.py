"""Checks of an unlearning run's inputs and output, made before any model is loaded."""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siu.bench.schema import Concept
from siu.errors import SiuError


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
