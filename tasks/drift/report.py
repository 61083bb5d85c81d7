"""The drift report: a self-contained HTML page (charts drawn as inline SVG: no scripts, no
external files, no plotting library), a JSON summary, and a short markdown version for a
Prefect artifact."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from citeops.tasks.drift.checks import CheckResult
from citeops.tasks.drift.detect import DriftReport

REFERENCE_COLOUR = "#4c72b0"
CURRENT_COLOUR = "#dd8452"


def report_paths(reports_dir: Path, report: DriftReport) -> tuple[Path, Path]:
    stamp = report.created_at.replace(":", "").replace("-", "").split(".")[0].replace("+", "")
    folder = Path(reports_dir) / "drift"
    return folder / f"drift-{stamp}.html", folder / f"drift-{stamp}.json"


def write_report(report: DriftReport, reports_dir: Path) -> tuple[Path, Path]:
    """Write ``drift-<time>.html`` and ``drift-<time>.json`` under ``<reports_dir>/drift``;
    record their paths on ``report`` and return them."""
    html_path, json_path = report_paths(reports_dir, report)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    report.report, report.summary_path = str(html_path), str(json_path)
    html_path.write_text(render_html(report), encoding="utf-8")
    write_summary(report, json_path)
    return html_path, json_path


def write_summary(report: DriftReport, path: Path) -> Path:
    """The JSON summary: the CLI's summary plus every check's details."""
    payload = report.summary()
    payload["details"] = {c.name: c.details for c in report.checks}
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return path


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}"


def _verdict_cell(check: CheckResult) -> str:
    colour = {"drift": "#c0392b", "no drift": "#2e7d32"}.get(check.status, "#777")
    return f'<td style="color:{colour};font-weight:bold">{html.escape(check.status)}</td>'


def render_html(report: DriftReport) -> str:
    """The whole report as one HTML string (no external files, scripts or fonts)."""
    e = html.escape
    headline = {"drift": "Drift detected", "no drift": "No drift"}.get(
        report.status, "Not enough data"
    )
    rows = "".join(
        f"<tr><td><a href='#{e(c.name)}'>{e(c.name)}</a></td><td>{e(c.kind)}</td>"
        f"<td>{e(c.method)}</td><td>{_fmt(c.statistic)}</td>"
        f"<td>{'&gt;' if c.direction == 'above' else '&lt;'} {_fmt(c.threshold)}</td>"
        f"{_verdict_cell(c)}<td>{e(c.note)}</td></tr>"
        for c in report.checks
    )
    sections = "".join(_check_section(c) for c in report.checks)
    meta = {
        "rule": report.rule,
        "current rows": report.current_rows,
        **report.window,
        **{f"reference {k}": v for k, v in report.reference.items()},
        "created": report.created_at,
        "seconds": round(report.seconds, 2),
    }
    meta_rows = "".join(
        f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in meta.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>citeops drift report: {e(headline)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
.verdict {{ font-size: 1.6em; font-weight: bold; }}
section {{ border-top: 1px solid #ddd; margin-top: 1.5em; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>citeops drift report</h1>
<p class="verdict" id="verdict">{e(headline)}</p>
<p>Drifted checks: {e(", ".join(report.drifted_checks) or "none")}.
Rule: <code>{e(report.rule)}</code>.</p>
<table>{meta_rows}</table>
<h2>Checks</h2>
<table id="checks"><tr><th>check</th><th>kind</th><th>method</th><th>statistic</th>
<th>threshold</th><th>verdict</th><th>note</th></tr>{rows}</table>
{sections}
</body></html>
"""


def _check_section(check: CheckResult) -> str:
    e = html.escape
    image = f'<div class="plot">{_plot(check) or ""}</div>'
    extra = ""
    for key, title in (
        ("top_terms_current", "Terms most typical of the current window"),
        ("top_terms_reference", "Terms most typical of the reference"),
        ("top_oov_words", "Most frequent out-of-vocabulary words"),
    ):
        if check.details.get(key):
            items = ", ".join(f"{e(str(t))} ({v})" for t, v in check.details[key])
            extra += f"<p><b>{title}:</b> {items}</p>"
    facts = {
        k: v
        for k, v in check.details.items()
        if not isinstance(v, list | dict) and k not in ("histogram",)
    }
    fact_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts.items())
    return (
        f'<section id="{e(check.name)}"><h3>{e(check.name)}: {e(check.status)}</h3>'
        f"<p>{e(check.method)}: statistic {_fmt(check.statistic)}, threshold "
        f"{_fmt(check.threshold)}. {e(check.note)}</p>{image}{extra}"
        f"<table>{fact_rows}</table></section>"
    )


# ---- plots: inline SVG drawn here (no plotting library, milliseconds per chart) ----------

W, H = 560, 230
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 30, 40


class _Chart:
    """A minimal SVG canvas with data coordinates mapped into the plot area."""

    def __init__(
        self, title: str, x_range: tuple[float, float], y_range: tuple[float, float], width: int = W
    ) -> None:
        self.width = width
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1
        self.parts: list[str] = [
            f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="13">'
            f"{html.escape(title)}</text>",
            f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{width - RIGHT}" y2="{H - BOTTOM}" '
            'stroke="#444"/>',
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#444"/>',
        ]
        for value in (self.y0, (self.y0 + self.y1) / 2, self.y1):
            self.text(LEFT - 6, self.py(value) + 4, _tick(value), anchor="end")
        for value in (self.x0, (self.x0 + self.x1) / 2, self.x1):
            self.text(self.px(value), H - BOTTOM + 15, _tick(value))

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (self.width - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return H - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)

    def text(self, x: float, y: float, label: str, anchor: str = "middle", size: int = 11) -> None:
        self.parts.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
            f'font-size="{size}">{html.escape(label)}</text>'
        )

    def steps(self, edges: list[float], heights: list[float], colour: str) -> None:
        points = [f"{self.px(edges[0]):.1f},{self.py(self.y0):.1f}"]
        for left, right, h in zip(edges[:-1], edges[1:], heights, strict=True):
            points += [
                f"{self.px(left):.1f},{self.py(h):.1f}",
                f"{self.px(right):.1f},{self.py(h):.1f}",
            ]
        points.append(f"{self.px(edges[-1]):.1f},{self.py(self.y0):.1f}")
        self.parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{" ".join(points)}"/>'
        )

    def bar(self, x_left: float, x_right: float, y: float, colour: str) -> None:
        top, base = sorted((self.py(y), self.py(max(self.y0, 0))))
        self.parts.append(
            f'<rect x="{self.px(x_left):.1f}" y="{top:.1f}" '
            f'width="{self.px(x_right) - self.px(x_left):.1f}" '
            f'height="{base - top:.1f}" fill="{colour}"/>'
        )

    def vline(self, x: float, colour: str, label: str, dashed: bool = False) -> None:
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        self.parts.append(
            f'<line x1="{self.px(x):.1f}" y1="{TOP}" x2="{self.px(x):.1f}" '
            f'y2="{H - BOTTOM}" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        right_edge = self.px(x) > self.width - RIGHT - 90
        self.text(
            self.px(x) + (-4 if right_edge else 4),
            TOP + 12,
            label,
            anchor="end" if right_edge else "start",
        )

    def hline(self, y: float, colour: str, label: str) -> None:
        self.parts.append(
            f'<line x1="{LEFT}" y1="{self.py(y):.1f}" x2="{self.width - RIGHT}" '
            f'y2="{self.py(y):.1f}" stroke="{colour}" stroke-dasharray="5,4"/>'
        )
        self.text(self.width - RIGHT, self.py(y) - 4, label, anchor="end")

    def legend(self, items: list[tuple[str, str]]) -> None:
        for i, (label, colour) in enumerate(items):
            x = self.width - RIGHT - 110
            y = TOP + 14 + 16 * i
            self.parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="10" fill="{colour}"/>')
            self.text(x + 16, y, label, anchor="start")

    def svg(self) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{H}" '
            f'viewBox="0 0 {self.width} {H}" font-family="sans-serif">'
            + "".join(self.parts)
            + "</svg>"
        )


def _tick(value: float) -> str:
    return f"{value:.3g}"


def _plot(check: CheckResult) -> str | None:
    """An inline SVG chart for the check, or ``None`` when there is nothing to draw."""
    if check.statistic is None:
        return None
    drawers: dict[str, Callable[[CheckResult], str]] = {
        "text": _draw_text,
        "length": _draw_histogram,
        "confidence": _draw_histogram,
        "oov": _draw_oov,
        "label_mix": _draw_label_mix,
    }
    return drawers[check.kind](check)


def _draw_histogram(check: CheckResult) -> str:
    hist = check.details["histogram"]
    edges = hist["edges"]
    top = max(hist["reference"] + hist["current"] + [1e-9]) * 1.1
    chart = _Chart(
        f"{check.name}: share of rows by "
        f"{'tokens' if check.kind == 'length' else 'max probability'}",
        (edges[0], edges[-1]),
        (0, top),
    )
    chart.steps(edges, hist["reference"], REFERENCE_COLOUR)
    chart.steps(edges, hist["current"], CURRENT_COLOUR)
    chart.legend([("reference", REFERENCE_COLOUR), ("current", CURRENT_COLOUR)])
    return chart.svg()


def _draw_text(check: CheckResult) -> str:
    null = check.details.get("null_aucs") or []
    low = min([0.4, check.statistic - 0.02, *null])
    chart = _Chart(f"{check.name}: domain classifier ROC AUC", (low, 1.0), (0, 1))
    if null:
        counts, edges = np.histogram(null, bins=15)
        peak = max(int(counts.max()), 1)
        for left, right, count in zip(edges[:-1], edges[1:], counts, strict=True):
            chart.bar(float(left), float(right), 0.8 * count / peak, "#bbbbbb")
        chart.text(chart.px(float(np.median(null))), chart.py(0.85), "permutation null")
    chart.vline(
        float(check.threshold or 0), "#000000", f"threshold {check.threshold:.3f}", dashed=True
    )
    chart.vline(float(check.statistic), CURRENT_COLOUR, f"AUC {check.statistic:.3f}")
    terms = (
        check.details.get("top_terms_current", [])[:8]
        + check.details.get("top_terms_reference", [])[:8]
    )
    return chart.svg() + (_draw_terms(check.name, terms) if terms else "")


def _draw_terms(name: str, terms: list[list[Any]]) -> str:
    """Horizontal bars of term weights: orange toward the current window, blue the reference."""
    limit = max(abs(float(w)) for _, w in terms) or 1.0
    height = 30 + 16 * len(terms)
    mid = 330
    parts = [
        f'<text x="{mid}" y="16" text-anchor="middle" font-size="13">{html.escape(name)}: '
        "top terms (orange: current, blue: reference)</text>"
    ]
    for i, (term, weight) in enumerate(terms):
        y = 26 + 16 * i
        size = abs(float(weight)) / limit * 200
        x = mid if weight > 0 else mid - size
        colour = CURRENT_COLOUR if weight > 0 else REFERENCE_COLOUR
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{size:.1f}" height="12" fill="{colour}"/>')
        anchor, tx = ("end", mid - 6) if weight > 0 else ("start", mid + 6)
        parts.append(
            f'<text x="{tx}" y="{y + 10}" text-anchor="{anchor}" font-size="11">'
            f"{html.escape(str(term))}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * mid}" height="{height}" '
        f'font-family="sans-serif">' + "".join(parts) + "</svg>"
    )


def _draw_oov(check: CheckResult) -> str:
    ref, cur = check.details["reference_oov_rate"], check.details["current_oov_rate"]
    limit = ref + float(check.threshold or 0)
    chart = _Chart(f"{check.name}: out-of-vocabulary rate", (0, 2), (0, max(ref, cur, limit) * 1.2))
    chart.bar(0.2, 0.8, ref, REFERENCE_COLOUR)
    chart.bar(1.2, 1.8, cur, CURRENT_COLOUR)
    chart.hline(limit, "#000000", "held-out reference + threshold")
    chart.legend([("reference (held out)", REFERENCE_COLOUR), ("current", CURRENT_COLOUR)])
    return chart.svg()


def _draw_label_mix(check: CheckResult) -> str:
    labels = check.details["labels"]
    chart = _Chart(f"{check.name}: share per label", (0, len(labels)), (0, 1))
    for i, label in enumerate(labels):
        chart.bar(i + 0.1, i + 0.5, check.details["reference"][i], REFERENCE_COLOUR)
        chart.bar(i + 0.5, i + 0.9, check.details["current"][i], CURRENT_COLOUR)
        chart.text(chart.px(i + 0.5), H - 8, label)
    chart.legend([("reference", REFERENCE_COLOUR), ("current", CURRENT_COLOUR)])
    return chart.svg()


def render_markdown(report: DriftReport) -> str:
    """A short markdown summary (the Prefect artifact)."""
    return summary_markdown(report.summary())


def summary_markdown(summary: dict[str, Any]) -> str:
    """Markdown from a JSON summary (what the flow passes between tasks)."""
    lines = [
        f"# Drift: {summary['status']}",
        "",
        f"Rule `{summary['rule']}`; {summary['current_rows']} queries; "
        f"report: `{summary['report']}`",
        "",
        "| check | statistic | threshold | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for name, c in summary["checks"].items():
        sign = ">" if c["direction"] == "above" else "<"
        lines.append(
            f"| {name} | {_fmt(c['statistic'])} | {sign} {_fmt(c['threshold'])} | {c['status']} |"
        )
    return "\n".join(lines) + "\n"
