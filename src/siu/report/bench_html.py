"""The ``siu bench run`` report: one self-contained HTML page with inline SVG plots.

Each metric against the number of steps, one line per method (like the paper's Figs. 2-3), with
the gold retain model as a dashed line; per-concept generality EM per method (like Fig. 4); the
summary table; and a few answers of each method on the forgotten concept's held-out images.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from siu.report.html import STYLE

RETAIN = "retain"  # the method name of the gold retain models' rows


def cell_name(method: str, steps: int, seed: int, slug: str) -> str:
    return f"{RETAIN}-{slug}" if method == RETAIN else f"{method}-s{steps}-seed{seed}-{slug}"


PLOT_METRICS = (
    ("efficacy_em", "Efficacy EM (forget image)"),
    ("generality_em", "Generality EM (held-out images)"),
    ("specificity", "Specificity"),
    ("fact_retention", "Fact retention"),
    ("fluency_ppl", "Fluency (perplexity, log scale)"),
    ("diversity", "Diversity"),
    ("g_eval", "G-Eval (judge)"),
    ("mia_auc_min_k", "MIA AUC (Min-K%)"),
    ("attack_relearn", "Named after relearning"),
)
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 300, 190, 44, 10, 22, 30


def _mean(values: Sequence[Any]) -> float | None:
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(xs) if xs else None


def _nice(v: float) -> str:
    if abs(v) >= 1e4:
        return f"{v:.0e}"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.2g}" if abs(v) < 10 else f"{v:.1f}"


def line_chart(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    colours: dict[str, str],
    reference: float | None = None,
    log: bool = False,
) -> str:
    """An SVG line chart of ``series`` (name -> [(x, y)]); ``reference`` is drawn dashed (retain).

    ``log``: a log10 y axis (perplexities of a wrecked model reach millions)."""
    if log:
        series = {n: [(x, math.log10(max(y, 1e-12))) for x, y in pts] for n, pts in series.items()}
        reference = math.log10(max(reference, 1e-12)) if reference is not None else None
    points = [p for pts in series.values() for p in pts]
    if not points:
        return ""
    ys = [y for _, y in points] + ([reference] if reference is not None else [])
    xs = sorted({x for x, _ in points})
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.08
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        if len(xs) == 1:
            return (PAD_L + W - PAD_R) / 2
        return PAD_L + (x - xs[0]) / (xs[-1] - xs[0]) * (W - PAD_L - PAD_R)

    def sy(y: float) -> float:
        return PAD_T + (y1 - y) / (y1 - y0) * (H - PAD_T - PAD_B)

    e = html.escape
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' role='img' aria-label='{e(title)}'>",
        f"<text x='{W / 2}' y='14' text-anchor='middle' font-size='12'>{e(title)}</text>",
        f"<line x1='{PAD_L}' y1='{H - PAD_B}' x2='{W - PAD_R}' y2='{H - PAD_B}' stroke='#999'/>",
        f"<line x1='{PAD_L}' y1='{PAD_T}' x2='{PAD_L}' y2='{H - PAD_B}' stroke='#999'/>",
    ]
    for y in (y0 + pad, (y0 + y1) / 2, y1 - pad):
        parts.append(
            f"<text x='{PAD_L - 4}' y='{sy(y) + 4:.1f}' text-anchor='end' font-size='10'>"
            f"{_nice(10**y if log else y)}</text>"
        )
    for x in xs:
        parts.append(
            f"<text x='{sx(x):.1f}' y='{H - PAD_B + 13}' text-anchor='middle' font-size='10'>{x:g}</text>"
        )
    parts.append(f"<text x='{W - PAD_R}' y='{H - 4}' text-anchor='end' font-size='10'>steps</text>")
    if reference is not None:
        parts.append(
            f"<line x1='{PAD_L}' y1='{sy(reference):.1f}' x2='{W - PAD_R}' y2='{sy(reference):.1f}' "
            "stroke='#000' stroke-dasharray='4 3'><title>retain</title></line>"
        )
    for name, pts in series.items():
        pts = sorted(pts)
        colour = colours[name]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f"<polyline points='{path}' fill='none' stroke='{colour}' stroke-width='1.8'/>")
        parts += [
            f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='2.6' fill='{colour}'>"
            f"<title>{e(name)}, {x:g} steps: {10**y if log else y:.3f}</title></circle>"
            for x, y in pts
        ]
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str, groups: dict[str, dict[str, float]], colours: dict[str, str], top: float = 100.0
) -> str:
    """Horizontal grouped bars: group (concept) -> name (method) -> value in [0, top]."""
    names = list(colours)
    rows = sum(len([n for n in names if n in g]) for g in groups.values()) + len(groups)
    bar, label_w, width = 9, 130, 620
    height = 24 + rows * bar + 10
    e = html.escape
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        f"aria-label='{e(title)}'><text x='{width / 2}' y='14' text-anchor='middle' font-size='12'>"
        f"{e(title)}</text>"
    ]
    y = 24
    scale = (width - label_w - 50) / top
    for group, values in groups.items():
        parts.append(
            f"<text x='{label_w - 6}' y='{y + bar}' text-anchor='end' font-size='10'>{e(group)}</text>"
        )
        for name in names:
            if name not in values:
                continue
            v = values[name]
            parts.append(
                f"<rect x='{label_w}' y='{y}' width='{max(0.0, v) * scale:.1f}' height='{bar - 1}' "
                f"fill='{colours[name]}'><title>{e(group)}, {e(name)}: {v:.1f}</title></rect>"
                f"<text x='{label_w + max(0.0, v) * scale + 3:.1f}' y='{y + bar - 1}' font-size='8'>{v:.0f}</text>"
            )
            y += bar
        y += bar
    parts.append("</svg>")
    return "".join(parts)


def _legend(colours: dict[str, str]) -> str:
    items = "".join(
        f"<span style='margin-right:1em'><span style='display:inline-block;width:.9em;height:.9em;"
        f"background:{c};vertical-align:middle'></span> {html.escape(n)}</span>"
        for n, c in colours.items()
    )
    return f"<p>{items}<span>- - - retain (gold reference)</span></p>"


def _examples(out: Path, cell: str, n: int = 3) -> list[dict[str, Any]]:
    path = out / "cells" / cell / "answers.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:  # a damaged line costs its example, not the report
            continue
        if isinstance(record, dict):
            records.append(record)
    named = [
        r for r in records if r.get("metric") == "generality_em" and "yes" not in (r.get("targets") or [])
    ]
    return named[:n]


def _md_table_to_html(table_md: str) -> str:
    lines = [line.strip().strip("|").split("|") for line in table_md.splitlines() if line.strip()]
    if len(lines) < 2:
        return ""
    head, body = lines[0], lines[2:]
    e = html.escape
    rows = "".join(
        "<tr>" + "".join(f"<td class='num'>{e(c.strip())}</td>" for c in row) + "</tr>" for row in body
    )
    return "<table><tr>" + "".join(f"<th>{e(c.strip())}</th>" for c in head) + "</tr>" + rows + "</table>"


def bench_report(cells: Sequence[dict[str, Any]], out: Path, table_md: str = "") -> str:
    """The page for a finished matrix; ``out`` holds the cells' answers (cells/<name>/answers.jsonl)."""
    e = html.escape
    methods = list(dict.fromkeys(c["method"] for c in cells if c["method"] != RETAIN))
    colours = {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(methods)}
    retain = [c for c in cells if c["method"] == RETAIN]
    steps = sorted({c["steps"] for c in cells if c["method"] != RETAIN})
    concepts = list(dict.fromkeys(c["concept"] for c in cells))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>siu bench</title>",
        f"<style>{STYLE} svg {{ margin: .3rem; }}</style></head><body>",
        "<h1>Unlearning benchmark</h1>",
        f"<p class='small'>{len(cells)} cells: methods {e(', '.join(methods))}; steps "
        f"{e(', '.join(map(str, steps)))}; concepts {e(', '.join(concepts))}. Points are means over seeds "
        "and concepts; hover for values.</p>",
        _legend(colours),
    ]
    for key, title in PLOT_METRICS:
        series = {}
        for m in methods:
            pts = []
            for s in steps:
                v = _mean([c["metrics"].get(key) for c in cells if c["method"] == m and c["steps"] == s])
                if v is not None:
                    pts.append((float(s), v))
            if pts:
                series[m] = pts
        ref = _mean([c["metrics"].get(key) for c in retain])
        parts.append(line_chart(title, series, colours, ref, log=key == "fluency_ppl"))
    if steps:
        last = steps[-1]
        groups: dict[str, dict[str, float]] = {}
        for concept in concepts:
            row = {}
            for m in methods:
                v = _mean(
                    [c["metrics"].get("generality_em") for c in cells
                     if c["method"] == m and c["steps"] == last and c["concept"] == concept]
                )  # fmt: skip
                if v is not None:
                    row[m] = v
            if row:
                groups[concept] = row
        parts.append("<h2>Per-concept generality EM</h2>")
        parts.append(bar_chart(f"generality EM at {last} steps (higher = forgotten)", groups, colours))
    if table_md:
        parts.append("<h2>Summary (mean ± std)</h2>" + _md_table_to_html(table_md))
    if steps and concepts:
        parts.append(
            f"<h2>Example answers</h2><p class='small'>{e(concepts[0])}, held-out images, seed 0, "
            f"{steps[-1]} steps.</p><table><tr><th>method</th><th>prompt</th><th>answer</th><th>names it</th></tr>"
        )
        for m in [*methods, *([RETAIN] if retain else [])]:
            for r in _examples(out, cell_name(m, steps[-1], 0, concepts[0])):
                parts.append(
                    f"<tr><td>{e(m)}</td><td>{e(r['prompt'])}</td><td>{e(r['answer'])}</td>"
                    f"<td>{'yes' if r.get('hit') else 'no'}</td></tr>"
                )
        parts.append("</table>")
    parts.append(
        "<p class='small'>Every cell's metrics.json, answers.jsonl and report.html are under cells/.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
