"""Writing results: atomic output directories and the versions that go into every record."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from siu import __version__
from siu.errors import SiuError

PARTIAL = "siu-partial"  # marks a directory siu is still writing (hidden, beside the output)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clean_partials(folder: Path, prefix: str) -> list[Path]:
    """Remove what killed siu runs left in ``folder`` (hidden partial directories); returns them.

    A partial directory is named ``<prefix>siu-partial-<pid>-...`` (``write_atomically`` uses the prefix
    ``.<output name>.``): one whose process is gone is removed, one whose process still runs (another
    siu writing the same output) is left alone.
    """
    removed = []
    for path in folder.glob(f"{prefix}{PARTIAL}-*"):
        pid = path.name.removeprefix(f"{prefix}{PARTIAL}-").split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _taken(out: Path) -> bool:
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def write_atomically(out: Path, write: Callable[[Path], None], overwrite: bool = False) -> None:
    """Fill a temporary sibling directory of ``out`` and rename it into place.

    ``out`` is checked again at the rename: if something appeared in it while siu worked (another run,
    a user's file) and ``overwrite`` is off, nothing of it is touched and the new result is kept in a
    visible sibling directory named in the error. With ``overwrite`` the previous ``out`` is replaced
    (and put back if the rename fails). What a killed run left behind is cleaned up first.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_partials(out.parent, f".{out.name}.")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{PARTIAL}-{os.getpid()}-", dir=out.parent))
    old: Path | None = None
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        if _taken(out) and not overwrite:
            raise FileExistsError(out)
        if _taken(out):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{PARTIAL}-{os.getpid()}-old-", dir=out.parent))
            os.replace(out, old / "replaced")
        os.replace(tmp, out)  # onto an empty directory, or none: a non-empty one raises ENOTEMPTY
    except (FileExistsError, OSError) as err:
        if not isinstance(err, FileExistsError) and err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            _undo(tmp, old, out)
            raise
        keep = out.parent / f"{out.name}.siu-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.replace(tmp, keep)
        _undo(None, old, out)
        raise SiuError(
            f"{out} was filled by something else while siu worked; it was left as it is, and this "
            f"result was saved to {keep} instead"
        ) from None
    except BaseException:
        _undo(tmp, old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _undo(tmp: Path | None, old: Path | None, out: Path) -> None:
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None and (old / "replaced").exists() and not out.exists():
        os.replace(old / "replaced", out)  # put the previous output back
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


def quiet_transformers() -> None:
    """For the command line: transformers' own warnings and progress bars off (siu prints its own)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
