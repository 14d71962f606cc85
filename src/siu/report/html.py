"""A self-contained HTML page for one evaluation: the metrics with their directions, and answers."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from siu.report import labels

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.missing { color: #a33; } .small { color: #666; font-size: .9em; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="missing">missing</span>'
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def eval_report(
    result: dict[str, Any], records: Sequence[dict[str, Any]], run: dict[str, Any] | None = None
) -> str:
    """The page for ``siu eval``'s ``result`` (metrics.json) and its answer records."""
    e = html.escape
    concept = result["concept"]["name"]
    missing = result.get("details", {}).get("missing", {})
    original = result.get("original_values", {})
    rows = "".join(
        f"<tr><td>{e(labels.name(k))} <span class='small'>({e(k)})</span></td>"
        f"<td class='num'>{_cell(v)}</td><td class='num'>{_cell(original.get(k))}</td>"
        f"<td>{e(labels.direction(k))}</td>"
        f"<td class='small'>{e(missing.get(k, result['directions'][k]['what']))}</td></tr>"
        for k, v in result["metrics"].items()
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>siu: unlearning {e(concept)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Unlearning {e(concept)}</h1>",
        f"<p class='small'>model {e(result['model'])} against the original {e(result['original'])}; "
        f"benchmark {e(result['bench'])}; judge {e(str(result.get('judge') or 'none'))}.</p>",
    ]
    if run is not None:
        losses = run.get("losses", [])
        data = run.get("dataset", [])
        own = sum(str(d.get("image") or "").startswith("forget image") for d in data)
        parts.append(
            f"<p>{e(run['method'])} with the {e(run['profile'])} profile, {len(losses)} steps, "
            f"{len(data)} samples, {own} of them on the one forget image (or views of it); final loss "
            f"{losses[-1]['loss']:.4f}.</p>"
            if losses
            else ""
        )
    parts += [f"<p class='missing'>Warning: {e(w)}</p>" for w in result.get("warnings", [])]
    parts.append(
        "<h2>Metrics</h2><p class='small'>Each figure of the unlearned model beside the original model's "
        "own value of it (before unlearning): forgetting shows as the distance between the two.</p>"
        "<table><tr><th>metric</th><th>unlearned</th><th>original</th><th>better</th><th>what</th></tr>"
    )
    parts.append(rows + "</table>")
    reference = result.get("details", {}).get("attack_original") or {}
    if reference:
        parts.append(
            "<h2>Attacks</h2><p class='small'>Share of name answers on the concept's test images that "
            "still name it (lower is better), and the original model under the same attack.</p>"
            "<table><tr><th>attack</th><th>unlearned</th><th>original</th></tr>"
        )
        parts += [
            f"<tr><td>{e(k)}</td><td class='num'>{_cell(v)}</td>"
            f"<td class='num'>{_cell(reference.get(k))}</td></tr>"
            for k, v in result["metrics"].items()
            if k.startswith("attack_")
        ]
        parts.append("</table>")
    for metric, title in (
        ("generality_em", "Answers on held-out images of the concept"),
        ("specificity_recognition", "Answers about other concepts"),
        ("fact_retention", "Text facts about the concept"),
        ("jailbreak_multilingual", "Other languages"),
    ):
        sample = [r for r in records if r.get("metric") == metric][:8]
        if not sample:
            continue
        parts.append(
            f"<h2>{e(title)}</h2><table><tr><th>image</th><th>prompt</th><th>answer</th><th>names a target</th></tr>"
        )
        parts += [
            f"<tr><td class='small'>{e(str(r.get('image') or ''))}</td><td>{e(r['prompt'])}</td>"
            f"<td>{e(r['answer'])}</td><td>{'yes' if r.get('hit') else 'no'}</td></tr>"
            for r in sample
        ]
        parts.append("</table>")
    parts.append("<p class='small'>Every answer is in answers.jsonl next to this page.</p></body></html>")
    return "\n".join(parts)
