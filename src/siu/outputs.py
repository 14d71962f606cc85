"""Writing results: atomic output directories and the versions that go into every record."""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from siu import __version__
from siu.errors import SiuError

PARTIAL = "siu-partial"  # marks a directory siu is still writing (hidden, beside the output)
LOCK = "siu-lock"  # ``.<output name>.siu-lock`` beside an output: the run writing it holds a flock on it


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


@dataclass
class _Claim:
    fd: int
    lock: Path
    made: list[Path] = field(default_factory=list)  # parent directories the claim created
    depth: int = 1  # claims of the same output in this process (a command, then write_atomically)
    owner: int = field(default_factory=os.getpid)


_CLAIMS: dict[Path, _Claim] = {}


def _entry(out: str | Path) -> Path:
    # the directory entry a run replaces: symlinks resolved up to it, not in it (os.replace doesn't follow)
    absolute = Path(os.path.abspath(out))
    if not absolute.name:
        raise SiuError(f"--out {out} is the root directory; choose a new directory")
    return absolute.parent.resolve() / absolute.name


def lock_path(out: str | Path) -> Path:
    """The lock file of an output: ``.<name>.siu-lock`` beside it."""
    entry = _entry(out)
    return entry.parent / f".{entry.name}.{LOCK}"


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid not yet recorded"


def _lock(out: Path, lock: Path) -> int:
    """An fd of ``lock`` holding an exclusive flock, or a SiuError naming the run that holds it."""
    while True:
        # no O_TRUNC: the holder's pid stays readable; O_NOFOLLOW: a planted symlink is not written through
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SiuError(
                f"{out} is being written by another siu run ({_holder(lock)}); nothing was done. "
                "Wait for that run to end or choose another --out (--overwrite does not take it over)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # a holder removes the file as it releases: then lock the file that is there now
            same = os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def claim_output(out: str | Path) -> None:
    """Take ``out`` for this process until :func:`release_output` (or exit); call before any work.

    An exclusive, non-blocking ``flock`` on ``lock_path(out)``, which holds the pid: a second siu run
    on the same output, with or without ``--overwrite``, gets a SiuError naming the path and that pid,
    and writes nothing. The kernel drops the lock when its process dies, so a killed run's lock file
    blocks nobody. Claims nest within a process (a command claims its output, ``write_atomically``
    claims it again). Missing parent directories are created, and removed on release if still empty.
    """
    key, lock = _entry(out), lock_path(out)
    held = _CLAIMS.get(key)
    if held is not None and held.owner == os.getpid():
        held.depth += 1
        return
    made = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = _lock(Path(out), lock)
    except OSError as err:
        _remove_empty(made)
        in_way = next((p for p in (lock.parent, *lock.parent.parents) if p.exists() and not p.is_dir()), None)
        if in_way is not None:
            raise SiuError(f"--out {out}: {in_way} is a file, not a directory") from None
        raise SiuError(f"--out {out}: cannot write in {lock.parent} ({err.strerror or err})") from None
    except BaseException:
        _remove_empty(made)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    _CLAIMS[key] = _Claim(fd, lock, made)


def release_output(out: str | Path) -> None:
    """End this process's claim of ``out`` (the innermost one, when claims nest)."""
    key = _entry(out)
    held = _CLAIMS.get(key)
    if held is None or held.owner != os.getpid():
        return
    held.depth -= 1
    if held.depth == 0:
        del _CLAIMS[key]
        _unlock(held)


def _unlock(held: _Claim) -> None:
    with contextlib.suppress(OSError):
        os.unlink(held.lock)  # while still locked, so that a waiting claim sees a new file
    os.close(held.fd)
    _remove_empty(held.made)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except FileNotFoundError:  # never made (a mkdir failed on the way down)
            continue
        except OSError:  # something was put in it
            return


def _release_all() -> None:
    for key, held in list(_CLAIMS.items()):
        if held.owner == os.getpid():  # not in a forked child: the parent still works
            del _CLAIMS[key]
            _unlock(held)


atexit.register(_release_all)  # the kernel drops the flocks; this removes the files


@contextlib.contextmanager
def output_claimed(out: str | Path | None) -> Iterator[None]:
    """:func:`claim_output` for a block (None: nothing to claim, e.g. a dry run)."""
    if out is None:
        yield
        return
    claim_output(out)
    try:
        yield
    finally:
        release_output(out)


def _taken(out: Path) -> bool:
    return out.exists() and (not out.is_dir() or any(out.iterdir()))


def write_atomically(out: Path, write: Callable[[Path], None], overwrite: bool = False) -> None:
    """Fill a temporary sibling directory of ``out`` and rename it into place.

    ``out`` is checked again at the rename: if something appeared in it while siu worked (another run,
    a user's file) and ``overwrite`` is off, nothing of it is touched and the new result is kept in a
    visible sibling directory named in the error. With ``overwrite`` the previous ``out`` is replaced
    (and put back if the rename fails). What a killed run left behind is cleaned up first. ``out`` is
    claimed (:func:`claim_output`) while it is written, if the command did not claim it already.
    """
    with output_claimed(out):  # the command claimed it already, or it is claimed for the write
        _write_atomically(out, write, overwrite)


def _write_atomically(out: Path, write: Callable[[Path], None], overwrite: bool) -> None:
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
