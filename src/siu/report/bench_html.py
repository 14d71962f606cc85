"""The ``siu bench run`` report: ``report.html``, its figures (PNG, PDF, SVG) and ``results.csv``.

The page shows the trade-off between forgetting and what must be kept per method, every metric
against the number of steps (like the paper's Figs. 2-3) with the original and the gold retain
model as reference lines, per-concept bars (like Fig. 4), summary tables that fit the page with
readable metric names and their directions, why each missing metric is missing, example answers
for every concept, and a link to every cell's own report.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siu.report import labels
from siu.report.bench_data import (
    RETAIN,
    Cell,
    Spread,
    cell_name,
    load_cell,
    metric_keys,
    original_spread,
    select,
    spread,
    write_results_csv,
)
from siu.report.html import STYLE

__all__ = ["RETAIN", "cell_name", "write_bench_report"]

FIGURES = "figures"
FIGURE_PREFIXES = ("tradeoff_", "steps_", "concepts")  # the report's own files in figures/
CONCEPT_KEYS = ("generality_em", "specificity", "fact_retention")
TRADEOFFS = (("generality_em", "specificity"), ("generality_em", "fact_retention"))
TABLE_COLUMNS = 5  # metrics per summary table, so that it fits the page
EXAMPLES = 2  # questions per concept, each answered by every method
PAGE_STYLE = (
    STYLE
    + """
body { max-width: 64rem; padding: 0 1rem; line-height: 1.4; }
figure { margin: 1rem 0 1.6rem; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #444; }
table.summary { table-layout: fixed; font-size: .85em; }
table.summary th { font-weight: 600; vertical-align: bottom; }
th .dir { display: block; font-weight: normal; color: #666; font-size: .9em; }
td, th { overflow-wrap: anywhere; }
a.missing { color: #a33; } tr.ref td { background: #fafafa; font-style: italic; }
tr.probe td { background: #f4f6fa; font-size: .9em; }
nav a { margin-right: .8em; } h3 { margin-bottom: .2rem; }
"""
)
e = html.escape


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1e4 else f"{v:.1e}"


def _fmt_spread(s: Spread) -> str:
    return _fmt(s.mean) if s.n == 1 else f"{_fmt(s.mean)} ± {_fmt(s.std)}"


def _missing_link(key: str, reason: str) -> str:
    return f"<a class='missing' href='#missing-{e(key)}' title='{e(reason)}'>missing</a>"


class Report:
    """What every section needs: the cells, their axes, and where the page lives."""

    def __init__(self, cells: Sequence[Cell], out: Path, results: dict[str, Any]) -> None:
        self.cells, self.out, self.results = list(cells), out, results
        self.methods = list(dict.fromkeys(c.method for c in cells if not c.is_retain))
        self.steps = sorted({c.steps for c in cells if not c.is_retain})
        self.seeds = sorted({c.seed for c in cells if not c.is_retain})
        self.concepts = list(dict.fromkeys(c.concept for c in cells))
        self.retain = [c for c in cells if c.is_retain]
        self.keys = metric_keys(cells)
        self.figures: dict[str, str] = {}  # stem -> caption

    def measured(self, key: str) -> bool:
        return any(c.value(key) is not None for c in self.cells)

    def reasons(self, key: str) -> Counter[str]:
        return Counter(c.why_missing(key) for c in self.cells if c.value(key) is None)

    # figures -------------------------------------------------------------------------------------
    def draw(self) -> None:
        from siu.report import figures as fg  # matplotlib is only needed here

        folder = self.out / FIGURES
        drawn: dict[str, Any] = {}
        for x_key, y_key in TRADEOFFS:
            drawn[f"tradeoff_{y_key}"] = (
                fg.tradeoff_figure(self.cells, x_key, y_key, self.methods, self.steps),
                f"{labels.name(x_key)} against {labels.name(y_key).lower()}, one panel per method: the "
                "means after each number of steps (numbers beside the points), bars from min to max over "
                "seeds and concepts; the other methods in grey behind. Best: top right."
                + self.original_note(x_key, y_key),
            )
        for group, keys in labels.groups().items():
            drawn[f"steps_{_slug(group)}"] = (
                fg.steps_figure(self.cells, keys, self.methods, self.steps),
                f"{group}: each metric against the number of unlearning steps, mean over seeds and "
                "concepts, bars from min to max; methods shifted sideways so that none hides another.",
            )
        if self.steps:
            drawn["concepts"] = (
                fg.concept_figure(self.cells, CONCEPT_KEYS, self.methods, self.concepts, self.steps[-1]),
                f"Per concept after {self.steps[-1]} steps: mean over seeds, bars from min to max; the "
                "hatched grey bars are that concept's original and retain models.",
            )
        for stem, (fig, caption) in drawn.items():
            if fig is not None:
                fg.save(fig, folder, stem)
                self.figures[stem] = caption
        _remove_stale(folder, set(self.figures))

    def original_note(self, *keys: str) -> str:
        values = [(k, original_spread(self.cells, k)) for k in keys]
        if any(v is None for _, v in values):
            return ""
        said = ", ".join(f"{labels.name(k)} {_fmt(v.mean)}" for k, v in values if v is not None)
        return f" The original model (not drawn): {said}."

    def figure(self, stem: str, alt: str) -> str:
        if stem not in self.figures:
            return ""
        src = f"{FIGURES}/{stem}"
        return (
            f"<figure><a href='{src}.png'><img src='{src}.png' alt='{e(alt)}'></a><figcaption>"
            f"{e(self.figures[stem])} <span class='small'>(<a href='{src}.pdf'>PDF</a>, "
            f"<a href='{src}.svg'>SVG</a>)</span></figcaption></figure>"
        )

    # sections ------------------------------------------------------------------------------------
    def intro(self) -> str:
        r = self.results
        seeds = len(self.seeds)
        parts = [
            f"<p>{len(self.cells) - len(self.retain)} unlearning runs: methods <b>{e(', '.join(self.methods))}</b>; "
            f"{e(', '.join(map(str, self.steps)))} steps; {seeds} seed{'s' if seeds != 1 else ''}; "
            f"concepts {e(', '.join(self.concepts))}.</p>",
            f"<p class='small'>model {e(str(r.get('model', '?')))}; benchmark {e(str(r.get('bench', '?')))}; "
            f"G-Eval judge {e(str(r.get('judge') or 'none'))}.</p>",
            "<p class='small'>Points are means over seeds and concepts; bars go from the smallest to the "
            "largest value. Every metric is named with its better direction (↑ higher is better, ↓ lower "
            "is better).",
        ]
        has_original = any(c.original for c in self.cells)
        parts.append(
            " <b>Dotted grey</b>: the original model, before unlearning."
            if has_original
            else " The cells' metrics.json hold no values of the original model, so none is drawn."
        )
        parts.append(
            f" <b>Dashed black</b>: the gold retain model (pre-trained without the concept's pictures), "
            f"measured for {len({c.concept for c in self.retain})} of {len(self.concepts)} concepts.</p>"
            if self.retain
            else " No retain model was evaluated (--retain none, or not a synthetic world), so none is "
            "drawn.</p>"
        )
        return "".join(parts)

    def steps_section(self) -> str:
        parts = ["<h2 id='steps'>Every metric against the number of steps</h2>"]
        for group, keys in labels.groups().items():
            parts.append(f"<h3>{e(group)}</h3>")
            parts.append(self.figure(f"steps_{_slug(group)}", f"{group} against steps"))
            parts.append(self.unmeasured(keys))
        return "\n".join(parts)

    def unmeasured(self, keys: Sequence[str]) -> str:
        absent = [k for k in keys if not self.measured(k)]
        if not absent:
            return ""
        items = "; ".join(
            f"<a href='#missing-{e(k)}'>{e(labels.name(k))}</a> ({e(self.reasons(k).most_common(1)[0][0])})"
            for k in absent
        )
        return f"<p class='small'>Not measured in any cell, so not drawn: {items}.</p>"

    def summary_tables(self) -> str:
        parts = [
            "<h2 id='summary'>Summary: mean ± std over seeds and concepts</h2>",
            "<p class='small'>The original model's row is the mean over concepts of its own values; "
            "<i>missing</i> links to the reason, and (n/N) says how many of the row's runs have a value.</p>",
        ]
        for group, keys in labels.groups().items():
            shown = [k for k in keys if self.measured(k)]
            for start in range(0, len(shown), TABLE_COLUMNS):
                chunk = shown[start : start + TABLE_COLUMNS]
                part = f" ({start // TABLE_COLUMNS + 1})" if len(shown) > TABLE_COLUMNS else ""
                parts.append(f"<h3>{e(group)}{part}</h3>{self.table(chunk)}")
        return "\n".join(parts)

    def table(self, keys: Sequence[str]) -> str:
        head = "".join(
            f"<th title='{e(labels.what(k))}'>{e(labels.name(k))}"
            f"<span class='dir'>{labels.arrow(k)} {e(labels.direction(k))}</span></th>"
            for k in keys
        )
        rows = [
            "<table class='summary'><colgroup><col style='width:10rem'><col style='width:4.5rem'>"
            "<col style='width:4rem'></colgroup>"
            f"<tr><th>method</th><th>steps</th><th>runs</th>{head}</tr>"
        ]
        if any(original_spread(self.cells, k) for k in keys):
            values = "".join(self.value_cell(original_spread(self.cells, k), k, []) for k in keys)
            n = len({c.concept for c in self.cells if c.original})  # one original value per concept
            rows.append(
                f"<tr class='ref'><td>original model</td><td class='num'>-</td><td class='num'>{n}</td>{values}</tr>"
            )
        if self.retain:
            rows.append(self.row("retain model", "-", self.retain, keys, "ref"))
        for method in self.methods:
            for n in self.steps:
                mine = select(self.cells, method, n)
                if mine:
                    rows.append(self.row(method, str(n), mine, keys))
        return "".join(rows) + "</table>"

    def row(self, title: str, steps: str, cells: Sequence[Cell], keys: Sequence[str], cls: str = "") -> str:
        values = "".join(self.value_cell(spread(c.value(k) for c in cells), k, cells) for k in keys)
        return (
            f"<tr class='{cls}'><td>{e(title)}</td><td class='num'>{e(steps)}</td>"
            f"<td class='num'>{len(cells)}</td>{values}</tr>"
        )

    def value_cell(self, s: Spread | None, key: str, cells: Sequence[Cell]) -> str:
        if s is None:
            reasons = Counter(c.why_missing(key) for c in cells)
            reason = reasons.most_common(1)[0][0] if reasons else "not measured"
            return f"<td class='num'>{_missing_link(key, reason)}</td>"
        partial = f" <span class='small'>({s.n}/{len(cells)})</span>" if cells and s.n < len(cells) else ""
        return f"<td class='num'>{_fmt_spread(s)}{partial}</td>"

    def missing_section(self) -> str:
        items = []
        for key in self.keys:
            reasons = self.reasons(key)
            if not reasons:
                continue
            total = sum(reasons.values())
            why = "; ".join(
                f"{e(r)}" + (f" ({n} cells)" if len(reasons) > 1 else "") for r, n in reasons.most_common()
            )
            items.append(
                f"<li id='missing-{e(key)}'><b>{e(labels.name(key))}</b> <span class='small'>({e(key)})</span>: "
                f"missing in {total} of {len(self.cells)} cells: {why}</li>"
            )
        if not items:
            return "<h2 id='missing'>Missing metrics</h2><p>Every metric has a value in every cell.</p>"
        return f"<h2 id='missing'>Missing metrics and why</h2><ul>{''.join(items)}</ul>"

    def examples_section(self) -> str:
        if not self.steps:
            return ""
        last = self.steps[-1]
        parts = [
            "<h2 id='examples'>Example answers, every concept</h2>",
            f"<p class='small'>Recognition questions on held-out pictures of each concept, answered by each "
            f"method after {last} steps (the lowest seed) and by the retain model. Every answer is in the "
            "cell's answers.jsonl.</p>",
        ]
        for concept in self.concepts:
            chosen = [
                (m, sorted(select(self.cells, m, last, concept), key=lambda c: c.seed)) for m in self.methods
            ]
            picked = [(m, cs[0]) for m, cs in chosen if cs]
            picked += [(RETAIN, c) for c in select(self.retain, concept=concept)[:1]]
            answers = {m: _answers(self.out, c) for m, c in picked}
            probes = next((a[:EXAMPLES] for a in answers.values() if a), [])
            parts.append(f"<h3>{e(concept)}</h3>")
            if not probes:
                parts.append(
                    "<p class='small'>No answers found (no cells/*/answers.jsonl for this concept).</p>"
                )
                continue
            rows = ["<table><colgroup><col style='width:11rem'><col><col style='width:8rem'></colgroup>"
                    "<tr><th>method</th><th>answer</th><th>names the concept</th></tr>"]  # fmt: skip
            for probe in probes:
                image = f"{probe.get('image')}: " if probe.get("image") else ""
                rows.append(
                    f"<tr class='probe'><td colspan='3'>{e(image)}<b>{e(str(probe.get('prompt')))}</b></td></tr>"
                )
                for method, records in answers.items():
                    r = _same_question(records, probe)
                    if r is not None:
                        rows.append(
                            f"<tr><td>{e(method)}</td><td>{e(str(r.get('answer')))}</td>"
                            f"<td>{'yes' if r.get('hit') else 'no'}</td></tr>"
                        )
            parts.append("".join(rows) + "</table>")
        return "\n".join(parts)

    def cells_section(self) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in self.concepts)
        rows = [f"<table class='summary'><colgroup><col style='width:10rem'><col style='width:4.5rem'></colgroup>"
                f"<tr><th>method</th><th>steps</th>{head}</tr>"]  # fmt: skip
        keys = [(RETAIN, 0)] if self.retain else []
        keys += [(m, n) for m in self.methods for n in self.steps]
        for method, n in keys:
            links = []
            for concept in self.concepts:
                mine = sorted(
                    select(self.cells, method, None if method == RETAIN else n, concept), key=lambda c: c.seed
                )
                links.append(
                    " · ".join(
                        _cell_link(c, "report" if method == RETAIN else f"seed {c.seed}") for c in mine
                    )
                )
            tds = "".join(f"<td>{x}</td>" for x in links)
            rows.append(
                f"<tr><td>{e(method)}</td><td class='num'>{'-' if method == RETAIN else n}</td>{tds}</tr>"
            )
        return (
            "<h2 id='cells'>Every cell's own report</h2><p class='small'>Each cell's folder under cells/ holds "
            "its report.html, metrics.json, answers.jsonl and (unlearned cells) run.json.</p>"
            + "".join(rows) + "</table>"
        )  # fmt: skip

    def files_section(self) -> str:
        figures = "".join(
            f"<li>{e(stem)}: " + ", ".join(f"<a href='{FIGURES}/{stem}.{x}'>{x.upper()}</a>" for x in ("png", "pdf", "svg"))
            + "</li>"
            for stem in self.figures
        )  # fmt: skip
        return (
            "<h2 id='files'>Files</h2><ul>"
            "<li><a href='results.csv'>results.csv</a>: one row per cell, every configuration field (run.*), "
            "every metric, the original model's values (original.*) and the missing reasons; "
            "<code>pandas.read_csv</code> reads it.</li>"
            "<li><a href='results.json'>results.json</a>: what siu bench run wrote; "
            "<a href='results.md'>results.md</a>: the summary as a markdown table.</li>"
            f"<li>Figures for a paper (PDF, SVG) in {FIGURES}/:<ul>{figures}</ul></li></ul>"
        )

    def page(self) -> str:
        nav = "".join(
            f"<a href='#{a}'>{t}</a>"
            for a, t in (("tradeoff", "trade-off"), ("steps", "metrics vs steps"), ("concepts", "per concept"),
                         ("summary", "tables"), ("missing", "missing"), ("examples", "examples"),
                         ("cells", "cells"), ("files", "files"))
        )  # fmt: skip
        tradeoffs = "".join(self.figure(f"tradeoff_{y}", f"{x} against {y}") for x, y in TRADEOFFS)
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>siu bench</title>",
            f"<style>{PAGE_STYLE}</style></head><body>",
            "<h1>Unlearning benchmark</h1>",
            self.intro(),
            f"<nav>{nav}</nav>",
            "<h2 id='tradeoff'>Forgetting against what must be kept</h2>",
            tradeoffs or "<p class='small'>No cell has both values.</p>",
            self.steps_section(),
            "<h2 id='concepts'>Per concept</h2>",
            self.figure("concepts", "per concept") or "<p class='small'>Nothing to draw.</p>",
            self.summary_tables(),
            self.missing_section(),
            self.examples_section(),
            self.cells_section(),
            self.files_section(),
            "</body></html>",
        ]
        return "\n".join(p for p in parts if p) + "\n"


def _slug(text: str) -> str:
    return "_".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def _remove_stale(folder: Path, stems: set[str]) -> None:
    """Figures an earlier report drew and this one does not (a metric no longer measured)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        ours = path.suffix in (".png", ".pdf", ".svg") and path.stem.startswith(FIGURE_PREFIXES)
        if ours and path.stem not in stems:
            path.unlink()


def _answers(out: Path, cell: Cell) -> list[dict[str, Any]]:
    """The cell's own answers to recognition questions on held-out pictures (not yes/no questions)."""
    path = out / "cells" / cell.name / "answers.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:  # a damaged line costs its example, not the report
            continue
        if (
            isinstance(record, dict) and record.get("metric") == "generality_em"
            and "yes" not in (record.get("targets") or []) and record.get("model") not in ("original", "retain")
        ):  # fmt: skip
            records.append(record)
    return records


def _same_question(records: Sequence[dict[str, Any]], probe: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in records
            if r.get("prompt") == probe.get("prompt") and r.get("image") == probe.get("image")
        ),
        None,
    )


def _cell_link(cell: Cell, text: str) -> str:
    target = cell.link("report.html") or cell.link("metrics.json")
    return f"<a href='{e(target)}'>{e(text)}</a>" if target else e(text)


def write_bench_report(out: Path, raw_cells: Sequence[dict[str, Any]], results: dict[str, Any]) -> list[Cell]:
    """report.html, figures/ and results.csv in ``out`` from results.json's (valid) cells."""
    cells = [load_cell(c, out) for c in raw_cells]
    report = Report(cells, out, results)
    report.draw()
    write_results_csv(cells, out / "results.csv")
    (out / "report.html").write_text(report.page(), encoding="utf-8")
    return cells
