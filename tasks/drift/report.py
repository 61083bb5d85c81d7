"""The drift report: a self-contained HTML page (plots inlined as PNG data URIs), a JSON
summary, and a short markdown version for a Prefect artifact."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.drift.checks import CheckResult
from tasks.drift.detect import DriftReport

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
    headline = {"drift": "Drift detected", "no drift": "No drift"}.get(report.status,
                                                                       "Not enough data")
    rows = "".join(
        f"<tr><td><a href='#{e(c.name)}'>{e(c.name)}</a></td><td>{e(c.kind)}</td>"
        f"<td>{e(c.method)}</td><td>{_fmt(c.statistic)}</td>"
        f"<td>{'&gt;' if c.direction == 'above' else '&lt;'} {_fmt(c.threshold)}</td>"
        f"{_verdict_cell(c)}<td>{e(c.note)}</td></tr>"
        for c in report.checks
    )
    sections = "".join(_check_section(c) for c in report.checks)
    meta = {"rule": report.rule, "current rows": report.current_rows, **report.window,
            **{f"reference {k}": v for k, v in report.reference.items()},
            "created": report.created_at, "seconds": round(report.seconds, 2)}
    meta_rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>"
                        for k, v in meta.items())
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
    plot = _plot(check)
    image = f'<img alt="{e(check.name)}" src="data:image/png;base64,{plot}">' if plot else ""
    extra = ""
    for key, title in (("top_terms_current", "Terms most typical of the current window"),
                       ("top_terms_reference", "Terms most typical of the reference"),
                       ("top_oov_words", "Most frequent out-of-vocabulary words")):
        if check.details.get(key):
            items = ", ".join(f"{e(str(t))} ({v})" for t, v in check.details[key])
            extra += f"<p><b>{title}:</b> {items}</p>"
    facts = {k: v for k, v in check.details.items()
             if not isinstance(v, list | dict) and k not in ("histogram",)}
    fact_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts.items())
    return (f'<section id="{e(check.name)}"><h3>{e(check.name)}: {e(check.status)}</h3>'
            f"<p>{e(check.method)}: statistic {_fmt(check.statistic)}, threshold "
            f"{_fmt(check.threshold)}. {e(check.note)}</p>{image}{extra}"
            f"<table>{fact_rows}</table></section>")


# ---- plots ------------------------------------------------------------------------------


def _plot(check: CheckResult) -> str | None:
    """A PNG (base64) for the check, or ``None`` when there is nothing to draw."""
    if check.statistic is None:
        return None
    drawers: dict[str, Callable[[Any, CheckResult], None]] = {
        "text": _draw_text, "length": _draw_histogram, "confidence": _draw_histogram,
        "oov": _draw_oov, "label_mix": _draw_label_mix,
    }
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the report still has every number
        return None
    wide = check.kind == "text"
    fig, axes = plt.subplots(1, 2 if wide else 1, figsize=(10 if wide else 6, 3.2))
    try:
        drawers[check.kind](axes, check)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw_histogram(ax: Any, check: CheckResult) -> None:
    hist = check.details["histogram"]
    edges = hist["edges"]
    ax.stairs(hist["reference"], edges, label="reference", color=REFERENCE_COLOUR, linewidth=2)
    ax.stairs(hist["current"], edges, label="current", color=CURRENT_COLOUR, linewidth=2)
    ax.set_xlabel("tokens" if check.kind == "length" else "max probability")
    ax.set_ylabel("share of rows")
    ax.set_title(check.name)
    ax.legend()


def _draw_text(axes: Any, check: CheckResult) -> None:
    left, right = axes
    null = check.details.get("null_aucs")
    if null:
        left.hist(null, bins=15, color="#bbb", label="permutation null")
    left.axvline(check.threshold, color="k", linestyle="--", label=f"threshold {check.threshold:.3f}")
    left.axvline(check.statistic, color=CURRENT_COLOUR, linewidth=3,
                 label=f"ROC AUC {check.statistic:.3f}")
    left.set_xlim(min(0.4, check.statistic - 0.02), 1.0)
    left.set_title(f"{check.name}: domain classifier")
    left.legend(fontsize=8)
    terms = check.details.get("top_terms_current", [])[:8] + check.details.get(
        "top_terms_reference", [])[:8]
    if terms:
        names = [t for t, _ in terms]
        weights = [w for _, w in terms]
        colours = [CURRENT_COLOUR if w > 0 else REFERENCE_COLOUR for w in weights]
        right.barh(range(len(terms)), weights, color=colours)
        right.set_yticks(range(len(terms)), names, fontsize=8)
        right.invert_yaxis()
        right.set_title("top terms (orange: current, blue: reference)")
    else:
        right.axis("off")


def _draw_oov(ax: Any, check: CheckResult) -> None:
    rates = [check.details["reference_oov_rate"], check.details["current_oov_rate"]]
    ax.bar(["reference (held out)", "current"], rates, color=[REFERENCE_COLOUR, CURRENT_COLOUR])
    ax.axhline(rates[0] + (check.threshold or 0), color="k", linestyle="--",
               label="reference + threshold")
    ax.set_ylabel("out-of-vocabulary rate")
    ax.set_title(check.name)
    ax.legend()


def _draw_label_mix(ax: Any, check: CheckResult) -> None:
    labels = check.details["labels"]
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], check.details["reference"], width=0.4, label="reference",
           color=REFERENCE_COLOUR)
    ax.bar([i + 0.2 for i in x], check.details["current"], width=0.4, label="current",
           color=CURRENT_COLOUR)
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("share")
    ax.set_title(check.name)
    ax.legend()


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
        lines.append(f"| {name} | {_fmt(c['statistic'])} | {sign} {_fmt(c['threshold'])} "
                     f"| {c['status']} |")
    return "\n".join(lines) + "\n"
