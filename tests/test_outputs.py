"""Outputs are written atomically and never replace what siu was not asked to replace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from siu.errors import SiuError
from siu.outputs import clean_partials, write_atomically
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
