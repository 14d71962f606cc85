"""Outputs are written atomically and never replace what siu was not asked to replace."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from siu.errors import SiuError
from siu.outputs import (
    claim_output,
    clean_partials,
    lock_path,
    output_claimed,
    release_output,
    write_atomically,
)
from siu.unlearn.inputs import check_out


def _result(text: str):  # noqa: ANN202
    return lambda tmp: (tmp / "result.txt").write_text(text)


def test_a_file_put_into_out_while_siu_works_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def write(tmp: Path) -> None:
        (tmp / "result.txt").write_text("new")
        out.mkdir()
        (out / "mine.txt").write_text("the user's")  # appears while siu trains

    with pytest.raises(SiuError, match="left as it is") as err:
        write_atomically(out, write)
    assert (out / "mine.txt").read_text() == "the user's" and not (out / "result.txt").exists()
    kept = Path(str(err.value).rsplit(" ", 2)[-2])
    assert kept.parent == tmp_path and (kept / "result.txt").read_text() == "new"
    assert not list(tmp_path.glob(".*"))  # no hidden leftovers


def test_a_second_run_to_the_same_out_does_not_erase_the_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_atomically(out, _result("first"))
    with pytest.raises(SiuError, match="saved to"):
        write_atomically(out, _result("second"))
    assert (out / "result.txt").read_text() == "first"
    write_atomically(out, _result("third"), overwrite=True)  # asked for: replaced
    assert (out / "result.txt").read_text() == "third"
    empty = tmp_path / "empty"
    empty.mkdir()
    write_atomically(empty, _result("into an empty directory"))
    assert (empty / "result.txt").exists()


def test_what_a_killed_run_left_is_cleaned_up_and_a_running_one_is_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".out.siu-partial-{int(dead.stdout)}-abc"
    running = tmp_path / f".out.siu-partial-{os.getpid()}-def"
    stale.mkdir()
    running.mkdir()
    assert clean_partials(tmp_path, f".{out.name}.") == [stale]
    assert not stale.exists() and running.exists()


def test_outputs_that_could_never_be_written_are_refused_first(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SiuError, match="is a file"):
        check_out(tmp_path / "a-file" / "out", [], None, overwrite=False)
    with pytest.raises(SiuError, match="cannot write"):
        check_out(Path("/proc/siu-out"), [], None, overwrite=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SiuError, match="current directory"):
        check_out(Path("."), [], None, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # the probes left nothing


def test_an_output_inside_an_input_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    world = tmp_path / "W"
    (world / "concepts" / "c" / "images").mkdir(parents=True)
    (world / "concepts" / "c" / "images" / "0.png").write_bytes(b"a user's photo")
    for out in (world / "concepts", world / "concepts" / "c" / "images", world):
        with pytest.raises(SiuError, match="input"):
            check_out(out, [world], None, overwrite=True)
    with pytest.raises(SiuError, match="contains the input"):
        check_out(tmp_path, [world], None, overwrite=True)
    assert (world / "concepts" / "c" / "images" / "0.png").read_bytes() == b"a user's photo"


def test_the_commands_refuse_an_output_inside_an_input_before_any_lock_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import siu.outputs
    from siu.cli import main

    claimed: list[str] = []
    monkeypatch.setattr(siu.outputs, "claim_output", lambda out: claimed.append(str(out)))

    world = tmp_path / "W"
    (world / "concepts" / "c").mkdir(parents=True)
    before = sorted(p.relative_to(world) for p in world.rglob("*"))
    commands = [
        ["eval", "--model", str(tmp_path / "m"), "--original", str(tmp_path / "m"), "--bench", str(world),
         "--concept", "c", "--out", str(world / "concepts" / "new" / "ev")],
        ["unlearn", "--model", str(tmp_path / "m"), "--bench", str(world), "--concept", "c",
         "--out", str(world / "concepts" / "new" / "u")],
        ["world", "pretrain", "--world", str(world), "--out", str(world / "concepts" / "new" / "m")],
    ]  # fmt: skip
    for argv in commands:
        assert main(argv) != 0, argv
        assert "inside the input" in capsys.readouterr().err, argv
        # not even the lock file or its parent folders were made inside the input: no claim was tried
        assert claimed == [] and sorted(p.relative_to(world) for p in world.rglob("*")) == before, argv


# ---- one run per output: the lock ------------------------------------------------------------------
HOLD = "import sys; from siu.outputs import claim_output; claim_output(sys.argv[1]); print('held', flush=True); sys.stdin.read()"


def _holder(out: Path) -> subprocess.Popen[str]:
    """Another process that claims ``out`` and holds it until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _held_elsewhere(out: Path) -> bool:
    # flock locks belong to an open file description: a second open() conflicts even in this process
    fd = os.open(lock_path(out), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_two_runs_with_overwrite_on_one_out_no_longer_last_one_wins(tmp_path: Path) -> None:
    out = tmp_path / "out"
    second = "import sys; from pathlib import Path; from siu.outputs import write_atomically; " \
             "write_atomically(Path(sys.argv[1]), lambda t: (t / 'result.txt').write_text('B'), overwrite=True)"  # fmt: skip
    refused: list[subprocess.CompletedProcess[str]] = []

    def write(tmp: Path) -> None:  # while this run trains, another one on the same --out runs to its end
        refused.append(
            subprocess.run([sys.executable, "-c", second, str(out)], capture_output=True, text=True)
        )
        (tmp / "result.txt").write_text("A")

    write_atomically(out, write, overwrite=True)
    assert refused[0].returncode != 0 and f"{out} is being written" in refused[0].stderr
    assert f"pid {os.getpid()}" in refused[0].stderr
    assert (out / "result.txt").read_text() == "A"  # before the lock, B's result was silently replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock file, no partial left


def test_a_claimed_out_is_refused_with_the_holders_pid_and_freed_on_release(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_atomically(out, _result("first"))
    holder = _holder(out)
    assert lock_path(out) == tmp_path / ".out.siu-lock" and lock_path(out).read_text() == f"{holder.pid}\n"
    for attempt in (
        lambda: claim_output(out),
        lambda: write_atomically(out, _result("second"), overwrite=True),
    ):
        with pytest.raises(
            SiuError, match=re.escape(f"{out} is being written by another siu run (pid {holder.pid})")
        ):
            attempt()
    assert (out / "result.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.siu-lock", "out"]  # nothing touched
    assert holder.communicate() == ("", None) and holder.returncode == 0  # its stdin closed: it ends
    assert not lock_path(out).exists()  # removed at the holder's exit
    write_atomically(out, _result("second"), overwrite=True)
    assert (out / "result.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_holder_does_not_block(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = _holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(out).read_text() == f"{holder.pid}\n"  # its file stays, its lock went with it
    with output_claimed(out):
        assert lock_path(out).read_text() == f"{os.getpid()}\n" and _held_elsewhere(out)
    assert not lock_path(out).exists()


def test_claims_nest_within_a_process_and_leave_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper" / "out"
    claim_output(out)
    assert (tmp_path / "new" / "deeper").is_dir() and _held_elsewhere(out)
    with output_claimed(out):  # the command claimed it; write_atomically claims it again
        pass
    assert _held_elsewhere(out)
    release_output(out)
    assert list(tmp_path.iterdir()) == []  # the lock file and the parents it made are gone


def test_the_command_line_refuses_a_claimed_out_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from siu.cli import main

    out = tmp_path / "world"
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT)  # another run's lock, as this process sees it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242\n")
        code = main(["world", "build", "--micro", "--overwrite", "--out", str(out)])
    finally:
        os.close(fd)
    assert code == 2 and "(pid 4242)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".world.siu-lock"]


def test_a_claim_that_cannot_be_written_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SiuError, match="a-file is a file"):
        claim_output(tmp_path / "a-file" / "new" / "out")
    with pytest.raises(SiuError, match="cannot write in /proc"):
        claim_output(Path("/proc/siu-out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
