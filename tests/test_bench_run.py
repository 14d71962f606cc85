"""``siu bench run``: the method x steps x seeds x concepts matrix on the micro world, with the gold
retain model as the reference row and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

from instance_figures import bench_args, bench_figures, check

from siu.cli import main
from siu.world.cache import cached_retain_model


def test_matrix_writes_cells_results_table_and_report(
    micro_world: tuple[Path, Path], micro_retain: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    world, model = micro_world
    home, retain = micro_retain
    out = tmp_path / "bench"
    args = bench_args(world, model, home, out)
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    cells = results["cells"]
    assert [(c["method"], c["steps"], c["seed"], c["concept"]) for c in cells] == [
        ("retain", 0, 0, "tesquo-velrix"),
        ("siu", 2, 0, "tesquo-velrix"),
        ("siu", 8, 0, "tesquo-velrix"),
        ("ga", 2, 0, "tesquo-velrix"),
        ("ga", 8, 0, "tesquo-velrix"),
    ]
    assert results["retain"] == {"tesquo-velrix": str(retain)}  # found in the cache, not retrained
    # the demo looks retain models up the same way, and never trains one
    assert cached_retain_model(world, model, "tesquo-velrix", home) == retain
    assert cached_retain_model(world, model, "tenran-rixtiv", home) is None
    assert results["judge"] == "rubric" and all(c["metrics"]["g_eval"] is not None for c in cells)
    table = (out / "results.md").read_text()
    assert "| siu | 8 | 1 |" in table and "| ga | 2 | 1 |" in table and "| retain | - | 1 |" in table
    for name in ("retain-tesquo-velrix", "siu-s8-seed0-tesquo-velrix", "ga-s2-seed0-tesquo-velrix"):
        assert (out / "cells" / name / "metrics.json").is_file()
    assert not [p for p in out.iterdir() if "siu-partial" in p.name]  # no unlearned models left behind
    assert all((out / "cells" / c / "run.json").is_file() for c in ("siu-s8-seed0-tesquo-velrix",))
    report = (out / "report.html").read_text()
    assert (out / "figures" / "steps_forgetting.png").is_file() and (out / "results.csv").is_file()
    assert "Example answers" in report and "<td>retain</td>" in report
    # the gold retain model never saw the concept's pictures: it does not name it, keeps the rest,
    # and membership inference separates its pictures from others' less well than with the original
    # (not at chance: on other concepts' pictures it confidently says *their* names); its C-Dis
    # compares its own tokenizer's pieces. At 8 steps SIU keeps the other concepts and the facts; GA
    # loses the others (the paper's finding)
    check(bench_figures(out), "bench.")
    # an interrupted run keeps its finished cells; `siu bench report` rewrites the summaries from them
    (out / "report.html").unlink()
    capsys.readouterr()
    assert main(["bench", "report", str(out)]) == 0
    assert (out / "report.html").read_text() == report and "| retain | - | 1 |" in capsys.readouterr().out
    # a LoRA cell keeps its adapter, not a merged model, and siu eval takes it as the model: the same
    # figures as the cell's
    adapter = out / "cells" / "siu-s8-seed0-tesquo-velrix" / "adapter"
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "config.json").exists()
    again = tmp_path / "again"
    assert main(["eval", "--model", str(adapter), "--original", str(model), "--bench", str(world),
                 "--concept", "tesquo-velrix", "--judge", "rubric", "--out", str(again)]) == 0  # fmt: skip
    cell = json.loads((out / "cells" / "siu-s8-seed0-tesquo-velrix" / "metrics.json").read_text())
    assert json.loads((again / "metrics.json").read_text())["metrics"] == cell["metrics"]
    # --resume after an interruption runs only the cells that are missing, with the same settings
    results["cells"] = cells[:-1]
    (out / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    log = capsys.readouterr().out
    assert "4 finished cell(s) kept" in log and "[1/1] ga, 8 steps" in log
    resumed = json.loads((out / "results.json").read_text())["cells"]
    assert resumed[:-1] == cells[:-1] and resumed[-1]["metrics"] == cells[-1]["metrics"]
    assert main([*args, "--resume", "--lr", "0.002"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main([*args, "--resume", "--overwrite"]) == 2
    # cells trained under other defaults (a newer siu changed GA's profile since) are not resumed
    results = json.loads((out / "results.json").read_text())
    assert all(c["defaults"] for c in results["cells"] if c["method"] != "retain")
    for c in results["cells"]:
        c["defaults"] = "0" * 16 if c["method"] == "ga" else c.get("defaults")
    (out / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "the cells of ga" in err and "other defaults" in err
    # bad input: unknown method, or a --retain that is neither auto, none nor a pattern; nothing written
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main([*args[:6], "--out", str(bad), "--methods", "siu,gx"]) == 2
    assert "unknown method" in capsys.readouterr().err and not bad.exists()
    assert main([*args[:6], "--out", str(bad), "--retain", "somewhere"]) == 2
    assert "{concept}" in capsys.readouterr().err and not bad.exists()
