"""The bench report's figures, drawn with matplotlib's object API (no pyplot, no global state).

Each figure is saved as PNG (for the page) and as PDF and SVG (for a paper), byte-identical from one
run to the next: no dates in the files, a fixed SVG id salt. Points are means over seeds and
concepts with min-max bars; the original model (dotted grey) and the gold retain model (dashed
black) are reference lines, and a legend names only what the figure draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from siu.report import labels
from siu.report.bench_data import Cell, Spread, original_spread, select, spread

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f")  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "h", "<", ">", "p")  # told apart in black and white too
ORIGINAL: dict[str, Any] = {"color": "0.45", "linestyle": ":", "linewidth": 1.6}
RETAIN: dict[str, Any] = {"color": "black", "linestyle": "--", "linewidth": 1.1}
RC: dict[str, Any] = {
    "svg.hashsalt": "siu-bench-report",  # SVG ids from a fixed salt: the same figure, the same file
    "pdf.fonttype": 42,  # TrueType text in the PDF: editable and searchable in a paper
    "font.size": 8.5,
    "axes.titlesize": 9,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
SAVE: dict[str, dict[str, Any]] = {
    "png": {"dpi": 110, "metadata": {"Software": None}},
    "pdf": {"metadata": {"CreationDate": None, "Producer": None}},
    "svg": {"metadata": {"Date": None}},
}
PANEL_W, PANEL_H = 3.4, 2.55  # inches


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


def styles(methods: Sequence[str]) -> dict[str, Style]:
    return {m: Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(methods)}


@dataclass
class Drawn:
    """What a figure drew, so that its legend names nothing absent."""

    methods: list[str] = field(default_factory=list)
    original: bool = False
    retain: bool = False

    def method(self, name: str) -> None:
        if name not in self.methods:
            self.methods.append(name)


def _legend(
    fig: Figure, drawn: Drawn, style: dict[str, Style], extra: Sequence[Line2D] = (), top: bool = False
) -> None:
    handles = [Line2D([], [], color=style[m].colour, marker=style[m].marker, label=m) for m in drawn.methods]
    if drawn.original:
        handles.append(Line2D([], [], label="original model (before unlearning)", **ORIGINAL))
    if drawn.retain:
        handles.append(Line2D([], [], label="retain model (never saw the concept's pictures)", **RETAIN))
    handles += list(extra)
    if handles:
        where = "outside upper center" if top else "outside lower center"
        fig.legend(handles=handles, loc=where, ncols=min(4, len(handles)), frameon=False)


def _grid(n: int, ncols: int = 3, **kw: Any) -> tuple[Figure, list[Axes]]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(PANEL_W * ncols, PANEL_H * nrows + 0.6), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False, **kw).flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _title(key: str) -> str:
    return f"{labels.name(key)}\n{labels.arrow(key)} {labels.direction(key)}".rstrip()


def _yerr(points: Sequence[Spread]) -> list[list[float]]:
    return [[p.mean - p.lo for p in points], [p.hi - p.mean for p in points]]


def has_values(cells: Sequence[Cell], key: str) -> bool:
    return any(c.value(key) is not None for c in cells)


def _references(ax: Axes, cells: Sequence[Cell], key: str, drawn: Drawn) -> None:
    original = original_spread(cells, key)
    if original is not None:
        ax.axhline(original.mean, **ORIGINAL)
        drawn.original = True
    retain = spread(c.value(key) for c in cells if c.is_retain)
    if retain is not None:
        ax.axhline(retain.mean, **RETAIN)
        drawn.retain = True


def _steps_panel(
    ax: Axes, cells: Sequence[Cell], key: str, methods: Sequence[str], steps: Sequence[int],
    style: dict[str, Style], drawn: Drawn,
) -> None:  # fmt: skip
    # steps as evenly spaced categories; each method shifted a little so that no point hides another
    width = min(0.1, 0.5 / max(1, len(methods)))
    for i, method in enumerate(methods):
        offset = (i - (len(methods) - 1) / 2) * width
        xs, points = [], []
        for j, n in enumerate(steps):
            point = spread(c.value(key) for c in select(cells, method, n))
            if point is not None:
                xs.append(j + offset)
                points.append(point)
        if not points:
            continue
        s = style[method]
        ax.errorbar(xs, [p.mean for p in points], yerr=_yerr(points), color=s.colour, marker=s.marker,
                    markersize=4.5, linewidth=1.3, elinewidth=0.9, capsize=2)  # fmt: skip
        drawn.method(method)
    _references(ax, cells, key, drawn)
    if key in labels.LOG_SCALE:
        ax.set_yscale("log")
    ax.set_xticks(range(len(steps)), [str(n) for n in steps])
    ax.set_xlim(-0.5, len(steps) - 0.5)
    ax.set_xlabel("unlearning steps")
    ax.set_title(_title(key))
    ax.grid(axis="y", color="0.92")


def steps_figure(
    cells: Sequence[Cell], keys: Sequence[str], methods: Sequence[str], steps: Sequence[int]
) -> Figure | None:
    """One panel per metric with values: the metric against the number of steps, per method."""
    keys = [k for k in keys if has_values(cells, k)]
    if not keys or not steps:  # only reference rows: nothing varies with steps
        return None
    style, drawn = styles(methods), Drawn()
    with matplotlib.rc_context(RC):
        fig, axes = _grid(len(keys))
        for ax, key in zip(axes, keys, strict=True):
            _steps_panel(ax, cells, key, methods, steps, style, drawn)
        _legend(fig, drawn, style)
    return fig


@dataclass(frozen=True)
class _Bars:
    label: str
    colour: str
    hatch: str | None
    values: Callable[[str, str], Spread | None]  # (metric, concept) -> its spread


def concept_figure(
    cells: Sequence[Cell], keys: Sequence[str], methods: Sequence[str], concepts: Sequence[str], steps: int
) -> Figure | None:
    """Per concept, one bar per method at ``steps`` (mean over seeds, min-max bar), one panel a metric;
    the concept's original and retain models as hatched grey bars before them (lines across the group
    would lie on the bars' tops, where the values often are)."""
    keys = [k for k in keys if has_values(select(cells, steps=steps), k)]
    if not keys or not concepts:
        return None
    style = styles(methods)
    series: list[_Bars] = []
    if any(original_spread(cells, k) for k in keys):
        series.append(_Bars("original model", "0.85", "///", lambda k, c: original_spread(cells, k, c)))
    if any(c.is_retain for c in cells):
        series.append(_Bars("retain model", "0.45", "xx", lambda k, c: spread(
            x.value(k) for x in select(cells, "retain", concept=c))))  # fmt: skip
    for m in methods:
        if select(cells, m, steps):
            series.append(_Bars(m, style[m].colour, None, lambda k, c, m=m: spread(
                x.value(k) for x in select(cells, m, steps, c))))  # fmt: skip
    width = 0.84 / len(series)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(10, 2.3 * len(keys) + 0.6), layout="constrained")
        axes = list(fig.subplots(len(keys), 1, squeeze=False)[:, 0])
        for ax, key in zip(axes, keys, strict=True):
            for j, concept in enumerate(concepts):
                for i, bars in enumerate(series):
                    point = bars.values(key, concept)
                    if point is not None:
                        ax.bar(j - 0.42 + (i + 0.5) * width, point.mean, width * 0.9, yerr=_yerr([point]),
                               color=bars.colour, hatch=bars.hatch, edgecolor="white" if bars.hatch else None,
                               ecolor="0.25", capsize=1.5)  # fmt: skip
            ax.set_xticks(range(len(concepts)), list(concepts))
            ax.set_xlim(-0.5, len(concepts) - 0.5)
            ax.set_title(f"{labels.name(key)} after {steps} steps ({labels.direction(key)})", loc="left")
            ax.grid(axis="y", color="0.92")
            ax.set_axisbelow(True)
        handles = [Patch(facecolor=b.colour, hatch=b.hatch, edgecolor="white", label=b.label) for b in series]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), frameon=False)
    return fig


def _tradeoff_point(cells: Sequence[Cell], x_key: str, y_key: str) -> tuple[Spread, Spread] | None:
    both = [c for c in cells if c.value(x_key) is not None and c.value(y_key) is not None]
    x, y = spread(c.value(x_key) for c in both), spread(c.value(y_key) for c in both)
    return (x, y) if x is not None and y is not None else None


def tradeoff_figure(
    cells: Sequence[Cell], x_key: str, y_key: str, methods: Sequence[str], steps: Sequence[int]
) -> Figure | None:
    """One panel per method: forgetting (x) against what must be kept (y) after each number of steps,
    the other methods' means in grey behind, the retain model as a star. The original model is left out:
    it sits far off (it names the concept: EM near 0) and would squeeze the points that matter."""
    points = {m: [(n, p) for n in steps if (p := _tradeoff_point(select(cells, m, n), x_key, y_key))]
              for m in methods}  # fmt: skip
    shown = [m for m in methods if points[m]]
    if not shown:
        return None
    style, drawn = styles(methods), Drawn()
    with matplotlib.rc_context(RC):
        fig, axes = _grid(len(shown), sharex=True, sharey=True)
        retain = _tradeoff_point([c for c in cells if c.is_retain], x_key, y_key)
        for ax, method in zip(axes, shown, strict=True):
            others = [p for m in shown if m != method for _, p in points[m]]
            if others:
                ax.scatter(
                    [x.mean for x, _ in others], [y.mean for _, y in others], s=12, color="0.8", zorder=1
                )
            xs, ys = [x for _, (x, _) in points[method]], [y for _, (_, y) in points[method]]
            s = style[method]
            ax.errorbar([p.mean for p in xs], [p.mean for p in ys], xerr=_yerr(xs), yerr=_yerr(ys), color=s.colour,
                        marker=s.marker, markersize=5, linewidth=1.3, elinewidth=0.8, capsize=2, zorder=3)  # fmt: skip
            for (n, _), x, y in zip(points[method], xs, ys, strict=True):
                ax.annotate(f"{n}", (x.mean, y.mean), xytext=(4, 3), textcoords="offset points", fontsize=7.5)
            if retain is not None:
                ax.plot(
                    retain[0].mean, retain[1].mean, marker="*", markersize=10, color="black", linestyle="none"
                )
                drawn.retain = True
            ax.set_title(method, color=s.colour)
            ax.grid(color="0.93")
        fig.supxlabel(labels.label(x_key), fontsize=8.5)
        fig.supylabel(labels.label(y_key), fontsize=8.5)
        extra = [Line2D([], [], color="0.3", marker="o", linestyle="none", markersize=0,
                        label="numbers: unlearning steps")]  # fmt: skip
        if len(shown) > 1:
            extra.insert(0, Line2D([], [], color="0.8", marker="o", linestyle="none", label="other methods"))
        if drawn.retain:
            extra.append(Line2D([], [], color="black", marker="*", markersize=10, linestyle="none",
                                label="retain model"))  # fmt: skip
        drawn.retain = False  # a mark, not a line: named by ``extra``
        _legend(fig, drawn, style, extra, top=True)  # the shared axis labels take the bottom
    return fig


def save(fig: Figure, folder: Path, stem: str) -> list[Path]:
    """``folder/stem.{png,pdf,svg}``; the same figure gives the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context(RC):
        engine = fig.get_layout_engine()
        if engine is not None:  # lay out once, not once per format (the slowest part of a save)
            engine.execute(fig)
            fig.set_layout_engine("none")
        for fmt, options in SAVE.items():
            path = folder / f"{stem}.{fmt}"
            fig.savefig(path, format=fmt, **options)
            paths.append(path)
    return paths
