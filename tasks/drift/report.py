"""The drift report: a self-contained HTML page (a Jinja2 template with autoescaping; charts
from :mod:`~citeops.tasks.drift.charts` inlined as SVG: no scripts, no external files), a
JSON summary, and a short markdown version for a Prefect artifact."""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from citeops.tasks.drift.charts import drift_figures, figure_svg
from citeops.tasks.drift.detect import DriftReport

if TYPE_CHECKING:
    from jinja2 import Environment
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
TERM_LISTS = (
    ("top_terms_current", "Terms most typical of the current window"),
    ("top_terms_reference", "Terms most typical of the reference"),
    ("top_oov_words", "Most frequent out-of-vocabulary words"),
)
STATUS_CLASS = {"drift": "drift", "no drift": "no-drift"}


def report_paths(reports_dir: Path, report: DriftReport) -> tuple[Path, Path]:
    """``<reports_dir>/drift/drift-<created_at>.html`` and ``.json``."""
    stamp = report.created_at.replace(":", "").replace("-", "").split(".")[0].replace("+", "")
    folder = Path(reports_dir) / "drift"
    return folder / f"drift-{stamp}.html", folder / f"drift-{stamp}.json"


def write_report(
    report: DriftReport, reports_dir: Path, figures: dict[str, list[Figure]] | None = None
) -> tuple[Path, Path]:
    """Write ``drift-<time>.html`` and ``drift-<time>.json`` under ``<reports_dir>/drift``;
    record their paths on ``report`` and return them. ``figures`` (by check name, from
    :func:`~citeops.tasks.drift.charts.drift_figures`) are drawn when not given."""
    html_path, json_path = report_paths(reports_dir, report)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    report.report, report.summary_path = str(html_path), str(json_path)
    html_path.write_text(render_html(report, figures), encoding="utf-8")
    write_summary(report, json_path)
    logger.info("drift report written to %s", html_path)
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


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("citeops.tasks.drift", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
    )
    env.filters["fmt"] = _fmt
    env.filters["status_class"] = lambda status: STATUS_CLASS.get(status, "other")
    return env


def render_html(report: DriftReport, figures: dict[str, list[Figure]] | None = None) -> str:
    """The whole report as one HTML string (no external files, scripts or fonts)."""
    from markupsafe import Markup

    figures = drift_figures(report) if figures is None else figures
    # matplotlib escapes the text it writes into the SVG, so the markup is safe to inline
    charts = {
        c.name: [Markup(figure_svg(fig)) for fig in figures.get(c.name, [])] for c in report.checks
    }
    headline = {"drift": "Drift detected", "no drift": "No drift"}.get(
        report.status, "Not enough data"
    )
    meta = {
        "rule": report.rule,
        "current rows": report.current_rows,
        **report.window,
        **{f"reference {k}": v for k, v in report.reference.items()},
        "created": report.created_at,
        "seconds": round(report.seconds, 2),
    }
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(report=report, headline=headline, meta=meta, charts=charts, term_lists=TERM_LISTS)
    )


def render_markdown(report: DriftReport) -> str:
    """A short markdown summary (the Prefect artifact)."""
    lines = [
        f"# Drift: {report.status}",
        "",
        f"Rule `{report.rule}`; {report.current_rows} queries; report: `{report.report}`",
        "",
        "| check | statistic | threshold | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for c in report.checks:
        sign = ">" if c.direction == "above" else "<"
        lines.append(
            f"| {c.name} | {_fmt(c.statistic)} | {sign} {_fmt(c.threshold)} | {c.status} |"
        )
    return "\n".join(lines) + "\n"
