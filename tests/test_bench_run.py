"""``siu bench run``: the method x steps x seeds x concepts matrix on the micro world."""

from __future__ import annotations

import json
from pathlib import Path

from siu.cli import main


def test_matrix_writes_cells_results_and_table(
    micro_world: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    world, model = micro_world
    out = tmp_path / "bench"
    args = ["bench", "run", "--model", str(model), "--bench", str(world), "--out", str(out),
            "--methods", "siu,ga", "--concepts", "tesquo-velrix", "--steps", "4", "--seeds", "1"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    cells = results["cells"]
    assert [(c["method"], c["steps"], c["seed"], c["concept"]) for c in cells] == [
        ("siu", 4, 0, "tesquo-velrix"),
        ("ga", 4, 0, "tesquo-velrix"),
    ]
    assert results["judge"] == "rubric" and all(c["metrics"]["g_eval"] is not None for c in cells)
    table = (out / "results.md").read_text()
    assert "| siu | 4 | 1 |" in table and "| ga | 4 | 1 |" in table
    for c in cells:
        cell = out / "cells" / f"{c['method']}-s4-seed0-tesquo-velrix"
        assert (cell / "metrics.json").is_file() and (cell / "report.html").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith("tmp")]  # no unlearned models left behind
    # SIU keeps the other concepts and the facts; GA does not (the paper's finding, on one cell each)
    siu, ga = cells[0]["metrics"], cells[1]["metrics"]
    assert siu["specificity"] > ga["specificity"] and siu["fact_retention"] > ga["fact_retention"]
    # bad input: unknown method, nothing written
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main([*args[:6], "--out", str(bad), "--methods", "siu,gx"]) == 2
    assert "unknown method" in capsys.readouterr().err and not bad.exists()
