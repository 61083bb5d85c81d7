"""`citeops demo`: the whole loop on the embedded default (what `make run` runs)."""

from __future__ import annotations

import logging

import typer

from citeops.flows.cli.common import info, print_json, quiet_refusals, settings_from
from citeops.flows.logs import quiet_terminal, run_log_path

log = logging.getLogger("citeops.demo")


ONLINE_MODES = ("ab", "shadow", "none")


def demo_command(
    first_examples: int | None = typer.Option(
        None,
        min=16,
        help="Cap on the first champion's training pairs (default: all of both datasets).",
    ),
    retrain_examples: int | None = typer.Option(
        None, min=16, help="Cap on the retrain's pairs (default: both datasets + feedback)."
    ),
    eval_examples: int | None = typer.Option(
        None,
        min=8,
        help="Test pairs per benchmark for the gate (same for both models; default: all).",
    ),
    bake_seconds: float = typer.Option(20.0, min=0, help="Bake window after the swap."),
    online: str = typer.Option(
        "ab",
        help="The challenger's online phase before the swap: ab (a sticky half of the users), "
        "shadow (scores a copy of their requests), none (swap once gated).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train a champion on SciFact + Citation-Integrity, serve it, send users through the
    API until the feedback trigger fires, then monitor -> retrain -> gate -> promote.

    The terminal shows the progress lines and the summary; the full log of the run goes to
    <home>/run-logs/demo-<time>.log (named at the start and in the summary)."""
    from citeops.flows.demo import DemoBudget, run_demo, summary_text
    from citeops.tasks.errors import CiteopsError

    if online not in ONLINE_MODES:
        raise CiteopsError(f"--online {online!r}: choose one of {', '.join(ONLINE_MODES)}")

    settings = settings_from()
    base = DemoBudget()
    budget = DemoBudget(
        first_train=base.first_train | cap(first_examples),
        retrain=base.retrain | cap(retrain_examples),
        evaluate_max_examples=eval_examples,
        bake_seconds=bake_seconds,
        online=online,
    )
    log_path = run_log_path(settings.home, "demo")
    info(f"citeops demo: home {settings.home}, base model {settings.model.base_model}")
    info(f"full log: {log_path}")
    try:
        with quiet_terminal(log_path, until_exit=True), quiet_refusals():
            summary = run_demo(settings, budget, log.info, log_path)
    except Exception:
        info(f"the demo stopped; its full log: {log_path}")
        raise
    if as_json:
        print_json(summary.to_dict())
    else:
        typer.echo(summary_text(summary))


def cap(examples: int | None) -> dict[str, int]:
    return {"max_examples": examples} if examples else {}


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
