"""``siu demo`` tells the whole story on a cached micro world: unlearn one concept, evaluate, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from siu.cli import main


def test_demo_story_on_the_cached_micro_world(micro_world: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    world, model = micro_world
    home = tmp_path / "home"
    shutil.copytree(world, home / "worlds" / "micro-seed0")
    shutil.copytree(model, home / "models" / "micro-seed0")  # same world and code: a cache hit
    assert main(["demo", "--micro", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and "[unlearn]" in out and "[eval]" in out and "report.html" in out
    (where,) = [p for p in (home / "demo").iterdir() if p.is_dir()]
    assert (where / "unlearned" / "run.json").is_file() and (
        where / "unlearned" / "model.safetensors"
    ).is_file()
    metrics = json.loads((where / "eval" / "metrics.json").read_text())
    assert metrics["judge"] == "rubric" and metrics["metrics"]["g_eval"] is not None
    page = (where / "report.html").read_text()
    assert "<h1>Unlearning" in page and "generality_em" in page
    # the input model was not touched
    assert not (home / "models" / "micro-seed0" / "run.json").exists()
