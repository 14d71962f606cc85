"""Writing results: atomic output directories and the versions that go into every record."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from siu import __version__


def write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Fill a temporary sibling directory of ``out`` and rename it into place (replacing ``out``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old: Path | None = None
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "replaced")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "replaced").exists() and not out.exists():
            os.replace(old / "replaced", out)  # put the previous output back
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def versions() -> dict[str, str]:
    import accelerate
    import peft
    import tokenizers
    import transformers

    return {
        "siu": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }
