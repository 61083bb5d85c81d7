"""The drift report's charts, drawn with matplotlib: one figure per judged check (two for a
text check: the classifier's AUC against its permutation null, and the top terms).

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state), so the
HTML report inlines them as SVG and the MLflow run logs them with ``mlflow.log_figure``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from citeops.tasks.drift.checks import CheckResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from citeops.tasks.drift.detect import DriftReport

REFERENCE_COLOUR = "#4c72b0"
CURRENT_COLOUR = "#dd8452"
NULL_COLOUR = "#bbbbbb"
FIGSIZE = (6.4, 2.6)
# Text stays text in the SVG (small, searchable); "$" in a query term is not math.
STYLE = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9}


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def _axes(title: str, height: float = FIGSIZE[1]) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(FIGSIZE[0], height), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    return fig, ax


def check_figures(check: CheckResult) -> list[Figure]:
    """The charts of one check; none when the check was not judged."""
    if check.statistic is None:
        return []
    drawers: dict[str, Callable[[CheckResult], list[Figure]]] = {
        "text": _text_figures,
        "length": _histogram_figure,
        "confidence": _histogram_figure,
        "oov": _oov_figure,
        "label_mix": _label_mix_figure,
    }
    with _style():
        return drawers[check.kind](check)


def drift_figures(report: DriftReport) -> dict[str, list[Figure]]:
    """Every check's charts, by check name (a check without charts maps to ``[]``)."""
    return {check.name: check_figures(check) for check in report.checks}


def figure_svg(fig: Figure) -> str:
    """``fig`` as an inline ``<svg>`` element (no XML prolog, no external references)."""
    buffer = io.StringIO()
    with _style():
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _histogram_figure(check: CheckResult) -> list[Figure]:
    hist = check.details["histogram"]
    unit = "tokens" if check.kind == "length" else "max probability"
    fig, ax = _axes(f"{check.name}: share of rows by {unit}")
    edges = hist["edges"]
    ax.stairs(hist["reference"], edges, color=REFERENCE_COLOUR, linewidth=2, label="reference")
    ax.stairs(hist["current"], edges, color=CURRENT_COLOUR, linewidth=2, label="current")
    ax.set_xlabel(unit)
    ax.set_ylabel("share of rows")
    ax.legend(loc="upper right")
    return [fig]


def _text_figures(check: CheckResult) -> list[Figure]:
    fig, ax = _axes(f"{check.name}: domain classifier ROC AUC")
    null = check.details.get("null_aucs") or []
    if null:
        ax.hist(null, bins=15, color=NULL_COLOUR, label="permutation null")
    threshold = float(check.threshold or 0)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    statistic = float(check.statistic or 0)
    ax.axvline(statistic, color=CURRENT_COLOUR, linewidth=2, label=f"AUC {statistic:.3f}")
    ax.set_xlim(min([0.4, statistic - 0.02, *null]), 1.01)
    ax.set_yticks([])
    ax.legend(loc="upper left")
    terms = (
        check.details.get("top_terms_current", [])[:8]
        + check.details.get("top_terms_reference", [])[:8]
    )
    return [fig, _terms_figure(check.name, terms)] if terms else [fig]


def _terms_figure(name: str, terms: list[list[Any]]) -> Figure:
    """Term weights as horizontal bars: orange toward the current window, blue the reference."""
    fig, ax = _axes(
        f"{name}: top terms (orange: current, blue: reference)", 0.6 + 0.22 * len(terms)
    )
    weights = np.array([float(w) for _, w in terms])
    colours = [CURRENT_COLOUR if w > 0 else REFERENCE_COLOUR for w in weights]
    positions = np.arange(len(terms))[::-1]
    ax.barh(positions, weights, color=colours)
    ax.set_yticks(positions, [str(t) for t, _ in terms])
    ax.axvline(0, color="#444444", linewidth=0.8)
    ax.set_xlabel("classifier weight")
    return fig


def _oov_figure(check: CheckResult) -> list[Figure]:
    ref, cur = check.details["reference_oov_rate"], check.details["current_oov_rate"]
    fig, ax = _axes(f"{check.name}: out-of-vocabulary rate")
    ax.bar(
        ["reference (held out)", "current"], [ref, cur], color=[REFERENCE_COLOUR, CURRENT_COLOUR]
    )
    limit = ref + float(check.threshold or 0)
    ax.axhline(limit, color="black", linestyle="--", label="held-out reference + threshold")
    ax.legend(loc="upper left")
    return [fig]


def _label_mix_figure(check: CheckResult) -> list[Figure]:
    labels = check.details["labels"]
    fig, ax = _axes(f"{check.name}: share per label")
    x = np.arange(len(labels))
    ax.bar(x - 0.2, check.details["reference"], 0.4, color=REFERENCE_COLOUR, label="reference")
    ax.bar(x + 0.2, check.details["current"], 0.4, color=CURRENT_COLOUR, label="current")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right")
    return [fig]
