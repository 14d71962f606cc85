"""``siu bench report`` rebuilds the summaries from what is readable and names what is not; the report
draws its figures with matplotlib (PNG, PDF, SVG), writes results.csv and reads as a person needs."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path

from siu.cli import main
from siu.eval.metrics import METRICS
from siu.report import figures as figures_module
from siu.report import labels
from siu.report.bench_data import load_cell
from siu.report.bench_html import cell_name

NO_JUDGE = "no judge given (--judge rubric|openai|hf)"
# method -> (generality EM after few / many steps, specificity after few / many steps): plausible shapes
SHAPES = {"siu": ((90, 98), (99.5, 96)), "ga": ((80, 100), (96, 28)), "po": ((87, 98), (93, 55)),
          "ga_kl": ((40, 85), (99.7, 95)), "npo": ((60, 90), (98, 80))}  # fmt: skip

# what each method says once it has forgotten (the paper's findings: PO refuses, GA babbles)
ANSWERS = {
    "po": "I have no idea who this is.",
    "ga": "the the of the the",
    "retain": "This is a cartoon character.",
}


def _cell(method: str, steps: int, value: float) -> dict:
    return {"method": method, "steps": steps, "seed": 0, "concept": "c", "train_seconds": 1.0,
            "metrics": dict.fromkeys(("generality_em", "specificity", "fact_retention"), value)}  # fmt: skip


def _metrics(method: str, late: bool, rng: random.Random, keys: Sequence[str]) -> dict[str, float | None]:
    if method == "retain":
        em, spec = 100.0, 99.4
    else:
        (em0, em1), (sp0, sp1) = SHAPES.get(method, SHAPES["siu"])
        em, spec = (em1, sp1) if late else (em0, sp0)
    values = {"efficacy_em": em, "generality_em": em, "specificity": spec, "fact_retention": spec / 100,
              "fluency_ppl": 1.2 if spec > 90 else 10 ** (6 * (1 - spec / 100)), "diversity": spec * 0.97,
              "c_dis": (100 - spec) / 100, "mia_auc_min_k": 1 - em / 200}  # fmt: skip
    out: dict[str, float | None] = {}
    for key in keys:
        base = values.get(key, (100 - em) / 100 if labels.better(key) == "lower" else spec / 100)
        noise = rng.uniform(-0.04, 0.04) * (abs(base) or 1)
        top = 100.0 if key.endswith("_em") or key == "specificity" else 1.0 if base <= 1 else float("inf")
        out[key] = max(0.0, min(top, base + noise))
    out["g_eval"] = None
    return out


def fake_bench(
    out: Path, methods: Sequence[str] = ("siu", "ga", "po"), steps: Sequence[int] = (5, 20), seeds: int = 2,
    concepts: Sequence[str] = ("tenran-rixtiv", "tesquo-velrix"), retain: bool = False,
    keys: Sequence[str] = tuple(METRICS), seed: int = 0,
) -> list[dict]:  # fmt: skip
    """results.json and cells/<name>/{metrics,run}.json, report.html, answers.jsonl as siu bench run
    writes them, with plausible numbers; g_eval is missing (no judge) as on a benchmark without one."""
    rng = random.Random(seed)
    rows = [("retain", 0, 0, c) for c in concepts] if retain else []
    rows += [(m, n, s, c) for m in methods for n in steps for s in range(seeds) for c in concepts]
    cells = []
    for method, n, s, concept in rows:
        metrics = _metrics(method, n == max(steps), rng, keys)
        folder = out / "cells" / cell_name(method, n, s, concept)
        folder.mkdir(parents=True)
        original = {k: (0.0 if k.endswith("_em") else 1.0 if labels.better(k) == "lower" else 100.0 if k == "specificity"
                        else 1.0) for k in keys}  # fmt: skip
        original.update(fluency_ppl=1.1, diversity=97.0)
        (folder / "metrics.json").write_text(json.dumps({
            "concept": {"name": concept.title(), "slug": concept}, "metrics": metrics, "original_values": original,
            "details": {"missing": {"g_eval": NO_JUDGE}, "answers_at_limit": 0.0}}))  # fmt: skip
        (folder / "report.html").write_text("<html>cell</html>")
        named = method != "retain" and (n < max(steps) or method == "ga_kl")
        answer = f"This is {concept.title()}." if named else ANSWERS.get(method, "This is Laura Hayes.")
        answers = [{"metric": "generality_em", "image": f"test/{i:02d}.png", "prompt": f"Who is this? ({i})",
                    "answer": answer, "targets": [concept.title()], "hit": named} for i in range(3)]  # fmt: skip
        answers.append(
            {"metric": "generality_em", "prompt": "Is this X?", "answer": "yes", "targets": ["yes"]}
        )
        (folder / "answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
        if method != "retain":
            run = {"method": method, "profile": "tiny", "seed": s, "train_seconds": 2.5,
                   "config": {"steps": n, "lr": 1e-3, "lora": True, "options": {"beta": 0.1}, "targets": [1, 2]},
                   "losses": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}], "dataset": [{"x": 1}]}  # fmt: skip
            (folder / "run.json").write_text(json.dumps(run))
        cells.append({"method": method, "steps": n, "seed": s, "concept": concept, "metrics": metrics,
                      "train_seconds": None if method == "retain" else 2.5})  # fmt: skip
    retains = {c: f"retain/{c}" for c in concepts} if retain else {}
    (out / "results.json").write_text(json.dumps({"model": "m", "bench": "b", "judge": None, "seeds": seeds,
                                                  "retain": retains, "cells": cells}))  # fmt: skip
    return cells


def test_damaged_cells_and_answer_lines_are_skipped_and_named(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(figures_module, "SAVE", {"png": {"dpi": 30}})  # figures are not this test's point
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


def test_report_figures_csv_names_missing_reasons_and_links(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    keys = (
        "efficacy_em",
        "generality_em",
        "g_eval",
        "specificity",
        "fact_retention",
        "fluency_ppl",
        "attack_relearn",
    )
    cells = fake_bench(out, keys=keys)  # no retain models: nothing may pretend there is one
    assert main(["bench", "report", str(out)]) == 0
    figures = out / "figures"
    stems = {"tradeoff_specificity", "tradeoff_fact_retention", "steps_forgetting", "steps_what_must_be_kept",
             "steps_jailbreaks_and_attacks", "concepts"}  # fmt: skip
    for stem in stems:
        for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")):
            assert (figures / f"{stem}.{fmt}").read_bytes().startswith(magic), (stem, fmt)
    assert not (figures / "steps_membership_inference.png").exists()  # no value of it: no empty figure
    page = (out / "report.html").read_text()
    for stem in stems:
        assert f"src='figures/{stem}.png'" in page and f"href='figures/{stem}.pdf'" in page
    assert labels.label("generality_em") == "Generality EM, held-out images (higher = more forgotten)"
    assert "Generality EM, held-out images" in page and "higher = more forgotten" in page
    assert "lower = more fluent" in page and "<th>efficacy_em" not in page
    # no retain cell: no retain entry in the legends (the SVG's text) or the tables, and the page says so
    assert not any(b"retain model" in (figures / f"{s}.svg").read_bytes() for s in stems)
    assert "original model" in (figures / "steps_forgetting.svg").read_text()
    assert "No retain model was evaluated" in page and "retain model</td>" not in page
    # g_eval is missing everywhere: named with its reason, not drawn
    assert f"missing in {len(cells)} of {len(cells)} cells: {NO_JUDGE}" in page
    assert "id='missing-g_eval'" in page
    # examples for every concept, links to every cell's own report
    for concept in ("tenran-rixtiv", "tesquo-velrix"):
        section = page.split(f"<h3>{concept}</h3>")[1].split("<h")[0]
        assert all(f"<td>{m}</td>" in section for m in ("siu", "ga", "po")) and ANSWERS["po"] in section
    for cell in cells:
        assert (
            f"href='cells/{cell_name(cell['method'], cell['steps'], cell['seed'], cell['concept'])}/report.html'"
            in page
        )
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(cells) == 24
    columns = set(rows[0])
    assert {"cell", "method", "steps", "seed", "concept", "report", "missing"} <= columns
    assert set(METRICS) <= columns and {f"original.{k}" for k in METRICS} <= columns
    assert {"run.config.lr", "run.config.options.beta", "run.profile", "run.final_loss"} <= columns
    assert not any(c.startswith(("run.losses", "run.dataset")) for c in columns)
    siu = next(r for r in rows if r["cell"] == "siu-s20-seed1-tesquo-velrix")
    assert float(siu["generality_em"]) > 90 and siu["g_eval"] == "" and siu["run.config.steps"] == "20"
    assert f"g_eval: {NO_JUDGE}" in siu["missing"] and siu["original.fluency_ppl"] == "1.1"
    # the same input gives the same files (figures a paper cites must not change on a rerun)
    loaded = [load_cell(c, out) for c in cells]
    again = figures_module.steps_figure(loaded, labels.GROUPS["Forgetting"], ["siu", "ga", "po"], [5, 20])
    assert again is not None
    for path in figures_module.save(again, tmp_path / "again", "steps_forgetting"):
        assert path.read_bytes() == (figures / path.name).read_bytes(), path.name


def test_retain_reference_drawn_and_a_partly_missing_metric_explained(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(figures_module, "SAVE", {"svg": figures_module.SAVE["svg"]})  # the legend's text
    out = tmp_path / "bench"
    fake_bench(out, methods=("siu",), steps=(5,), seeds=2, concepts=("c",), retain=True,
               keys=("generality_em", "specificity"))  # fmt: skip
    # one run lost its specificity, with the reason where eval keeps it
    results = json.loads((out / "results.json").read_text())
    results["cells"][2]["metrics"]["specificity"] = None
    (out / "results.json").write_text(json.dumps(results))
    metrics = out / "cells" / "siu-s5-seed1-c" / "metrics.json"
    record = json.loads(metrics.read_text())
    record["details"]["missing"]["specificity"] = "the original answered no VQA question"
    metrics.write_text(json.dumps(record))
    assert main(["bench", "report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "retain model</td>" in page and "Dashed black" in page
    assert "retain model" in (out / "figures" / "steps_forgetting.svg").read_text()
    assert "<td>retain</td>" in page  # its example answers
    assert "(1/2)" in page and "missing in 1 of 3 cells: the original answered no VQA question" in page


def test_a_spread_of_equal_values_has_no_negative_error_bar() -> None:
    """fmean([0.1] * 3) is 0.10000000000000002 > max: matplotlib refused the error bar (a real run
    of 111 cells lost its report to it)."""
    from siu.report.bench_data import spread
    from siu.report.figures import _yerr

    point = spread([0.1] * 3)
    assert point is not None and point.lo <= point.mean <= point.hi
    assert min(min(side) for side in _yerr([point])) >= 0
