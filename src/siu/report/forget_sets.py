"""The page of ``siu bench run --forget-sets``: forgetting and what is kept against the number of
concepts forgotten (joint) and against the request (sequential), with the original as reference."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from siu.eval.forgetting import FORGET_MAX
from siu.report import labels
from siu.report.figures import ORIGINAL, PANEL_H, PANEL_W, save, styles
from siu.report.html import STYLE

JOINT_KEYS = ("generality_em", "specificity", "fact_retention")
OTHERS_MIN = 0.90  # the sequential goal of the many-concepts issue (siu.sequence's, one layer up)
SEQUENCE_KEYS = (
    ("forget", "this request's concept recognised", FORGET_MAX),
    ("earlier_max", "an earlier concept recognised (max)", FORGET_MAX),
    ("others_relative", "other concepts kept (x original)", OTHERS_MIN),
)
GOAL: dict[str, Any] = {"color": "tab:green", "linestyle": "--", "linewidth": 0.9}


def joint_figure(cells: Sequence[dict[str, Any]], retain: dict[str, Any] | None = None) -> Figure:
    methods = list(dict.fromkeys(c["method"] for c in cells))
    style = styles(methods)
    fig = Figure(figsize=(PANEL_W * len(JOINT_KEYS), PANEL_H + 0.5), layout="constrained")
    axes = fig.subplots(1, len(JOINT_KEYS))
    for ax, key in zip(axes, JOINT_KEYS, strict=True):
        for method in methods:
            mine = [c for c in cells if c["method"] == method and isinstance(c["mean"].get(key), int | float)]
            ax.plot([c["size"] for c in mine], [c["mean"][key] for c in mine], label=method,
                    color=style[method].colour, marker=style[method].marker)  # fmt: skip
        sizes = sorted({c["size"] for c in cells})
        original = {c["size"]: c["original_mean"].get(key) for c in cells}
        if all(isinstance(original[s], int | float) for s in sizes):
            # with a marker: one size alone is a point, not a line
            ax.plot(
                sizes, [original[s] for s in sizes], label="original", marker="_", markersize=10, **ORIGINAL
            )
        if retain is not None and isinstance(retain["mean"].get(key), int | float):
            ax.plot([1], [retain["mean"][key]], linestyle="none", marker="x", color="black", markersize=8,
                    label="gold retain model (K=1)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("concepts forgotten jointly")
        ax.set_title(labels.label(key), fontsize=8.5)
    axes[0].legend(loc="best")
    return fig


def sequence_figure(sequences: Sequence[dict[str, Any]]) -> Figure:
    methods = [s["method"] for s in sequences]
    style = styles(methods)
    fig = Figure(figsize=(PANEL_W * len(SEQUENCE_KEYS), PANEL_H + 0.5), layout="constrained")
    axes = fig.subplots(1, len(SEQUENCE_KEYS))
    for ax, (key, title, goal) in zip(axes, SEQUENCE_KEYS, strict=True):
        for seq in sequences:
            rows = [r for r in seq["requests"] if isinstance(r.get(key), int | float)]
            ax.plot([r["request"] for r in rows], [r[key] for r in rows], label=seq["method"],
                    color=style[seq["method"]].colour, marker=style[seq["method"]].marker)  # fmt: skip
        ax.axhline(goal, label="goal", **GOAL)
        if key == "others_relative":
            ax.axhline(1.0, label="original", **ORIGINAL)
        requests = sorted({r["request"] for seq in sequences for r in seq["requests"]})
        ax.set_xticks(requests, [str(k) for k in requests])
        ax.set_xlabel("request")
        ax.set_title(title, fontsize=8.5)
        ax.legend(loc="best", fontsize=7)  # each panel its own: the goal and the original differ
    return fig


def write_forget_sets_report(out: Path, result: dict[str, Any], table: str) -> Path:
    """``out/forget-sets.html`` with its figures in ``out/figures/`` (PNG, PDF, SVG) and ``table`` (the
    text tables of ``forget-sets.md``)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>siu: many concepts</title>",
        f"<style>{STYLE}</style></head><body><h1>Forgetting many concepts</h1>",
        f"<p class='small'>model {e(result['model'])}; benchmark {e(result['bench'])}; step cap "
        f"{result['steps']}, seed {result['seed']}; concepts in this order: {e(', '.join(result['order']))}."
        "</p>",
    ]
    if result["joint"]:
        save(joint_figure(result["joint"], result.get("retain")), out / "figures", "forget_sets_joint")
        parts += [
            "<h2>Joint: the first K concepts in one run</h2>",
            "<p>Means over the forget set of each metric of <code>siu eval</code> (specificity on the "
            "concepts kept); the dotted line is the original model's own value. Per concept: "
            "<code>joint/&lt;method&gt;-&lt;KK&gt;/&lt;concept&gt;/report.html</code> (a set of one: "
            "<code>joint/&lt;method&gt;-01/report.html</code>). The cross at K=1 is the first concept's gold "
            "retain model, when one is cached (<code>joint/retain-01/</code>); for a larger set none exists "
            "(it would have to miss every concept of the set).</p>",
            "<img src='figures/forget_sets_joint.png' alt='forgetting and what is kept against the number "
            "of concepts forgotten jointly'>",
        ]
    if result["sequential"]:
        save(sequence_figure(result["sequential"]), out / "figures", "forget_sets_sequential")
        parts += [
            "<h2>Sequential: one request after another</h2>",
            "<p>After each request, held-out pictures of every concept: the concept just forgotten, the "
            "highest recognition of an earlier one (did it come back?) and the others relative to the "
            "original. Every intermediate model: <code>sequential/&lt;method&gt;/NN-&lt;concept&gt;</code> "
            "(<code>siu eval --model</code> takes it).</p>",
            "<img src='figures/forget_sets_sequential.png' alt='forgetting and what is kept against the "
            "request'>",
        ]
    parts.append(f"<h2>Tables</h2><pre>{e(table)}</pre></body></html>")
    page = out / "forget-sets.html"
    page.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return page
