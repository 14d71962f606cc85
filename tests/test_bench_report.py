"""``siu bench report`` rebuilds the summaries from what is readable and names what is not."""

from __future__ import annotations

import json
from pathlib import Path

from siu.cli import main
from siu.eval.metrics import METRICS


def _cell(method: str, steps: int, value: float) -> dict:
    return {"method": method, "steps": steps, "seed": 0, "concept": "c", "train_seconds": 1.0,
            "metrics": dict.fromkeys(METRICS, value)}  # fmt: skip


def test_damaged_cells_and_answer_lines_are_skipped_and_named(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    cells = [_cell("siu", 5, 1.0), _cell("ga", 5, 2.0), {"steps": 5, "seed": 0, "concept": "c", "metrics": {}},
             {**_cell("po", 5, 3.0), "metrics": ["not", "a", "dict"]}, {**_cell("npo", 5, 1.0), "seed": "x"}]  # fmt: skip
    cells[1]["metrics"]["specificity"] = "high"
    (out / "cells" / "siu-s5-seed0-c").mkdir(parents=True)
    answer = {"metric": "generality_em", "prompt": "Who?", "answer": "This is Ann Lee.", "targets": ["C"]}
    (out / "cells" / "siu-s5-seed0-c" / "answers.jsonl").write_text(
        json.dumps(answer) + "\n{broken json\n" + '"a string"\n'
    )
    (out / "results.json").write_text(json.dumps({"cells": cells}))
    assert main(["bench", "report", str(out)]) == 0
    printed = capsys.readouterr().out
    for index, what in ((1, "metrics specificity not numbers"), (2, "method is missing"),
                        (3, "metrics is missing or not an object"), (4, "seed is missing or not a whole number")):  # fmt: skip
        assert f"cells[{index}]" in printed and what in printed, (index, printed)
    assert "| siu | 5 | 1 |" in (out / "results.md").read_text()
    assert "This is Ann Lee." in (out / "report.html").read_text()
    (out / "results.json").write_text(json.dumps({"cells": [cells[2]]}))
    assert main(["bench", "report", str(out)]) == 2 and "no usable" in capsys.readouterr().err
