"""`citeops ab start|status|report|stop`: the online phase of a challenger (A/B split or
shadow) on every serving endpoint.

The commands call the release stage's functions directly (:mod:`citeops.tasks.release.
online`), the ones the ``retrain`` and ``monitor`` flows use; refusals print one line and
exit with status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from citeops.flows.cli.common import info, print_json, settings_from, stage_progress

if TYPE_CHECKING:
    import httpx

    from citeops.configs.settings import Settings

app = typer.Typer(
    help="Online phase of a challenger: A/B split or shadow on every endpoint, report, verdict.",
    no_args_is_help=True,
)

ENDPOINT_OPTION = typer.Option(
    None,
    "--endpoint",
    help="A serving endpoint's base URL (repeat for each replica; default promote.endpoints).",
)


def settings_for(endpoints: list[str] | None) -> Settings:
    """Settings with ``--endpoint`` options as ``promote.endpoints``."""
    return settings_from(promote={"endpoints": tuple(endpoints)} if endpoints else None)


@contextmanager
def endpoints_client(settings: Settings) -> Iterator[tuple[httpx.Client, list[str]]]:
    """The admin client and every replica's base URL."""
    from citeops.tasks.release.endpoints import serving_endpoints
    from citeops.tasks.release.promote import admin_client

    with admin_client(settings) as client:
        yield client, serving_endpoints(settings)


def _print_record(record: dict[str, Any]) -> None:
    """The offline gate table and the online report beside it (when the record has them),
    then the outcome."""
    from citeops.tasks.release.online_report import report_text

    gate = record.get("gate") or {}
    report = (gate.get("online") or {}).get("report")
    for text in (gate.get("text_table"), report_text(report) if report else None):
        if text:
            typer.echo(text)
    typer.echo(f"{record['kind']} #{record['id']}: {record['outcome']}  {record['detail']}")


@app.command("start")
def start_command(
    version: int = typer.Option(..., "--version", help="The registered version to put online."),
    share: float | None = typer.Option(
        None,
        "--share",
        help="Share of clients (split) or requests (shadow); default promote.online_share.",
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="split or shadow (default from promote.online; else split)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-request assignment."),
    endpoints: list[str] | None = ENDPOINT_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Start the online phase of a registered version on every endpoint (all or nothing)."""
    from citeops.tasks.release.online import ExperimentPlan, online_mode, start_online_phase

    settings = settings_for(endpoints)
    plan = ExperimentPlan(
        str(version),
        mode or online_mode(settings) or "split",
        settings.promote.online_share if share is None else share,
        seed,
    )
    with stage_progress(), endpoints_client(settings) as (client, urls):
        record = start_online_phase(settings, client, urls, plan)
    if as_json:
        print_json(record)
    else:
        _print_record(record)


@app.command("status")
def status_command(
    endpoints: list[str] | None = ENDPOINT_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print each endpoint's status as JSON."),
) -> None:
    """What each endpoint's experiment is: mode, share, versions, request counts."""
    from citeops.tasks.release.online import read_status

    settings = settings_for(endpoints)
    with endpoints_client(settings) as (client, urls):
        status = read_status(client, urls)
    if as_json:
        print_json(status.to_dict())
        return
    for endpoint, body in status.endpoints.items():
        if not body.get("active"):
            typer.echo(f"{endpoint}: no experiment")
            continue
        typer.echo(
            f"{endpoint}: {body.get('experiment_id')} {body.get('mode')} share "
            f"{body.get('share')}: champion v{body.get('champion_version')}, challenger "
            f"v{body.get('challenger_version')}, requests {body.get('requests')}, "
            f"shadow {body.get('shadow')}"
        )


@app.command("report")
def report_command(
    endpoints: list[str] | None = ENDPOINT_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Per-arm requests, feedback, accuracy (95 % CI) and p95 latency, the accuracy
    difference, the shadow agreement, and the verdict (promote | abort | continue)."""
    from citeops.tasks.release.online import experiment_report, read_status

    settings = settings_for(endpoints)
    with endpoints_client(settings) as (client, urls):
        status = read_status(client, urls)
    report = experiment_report(settings, status)
    if as_json:
        print_json(report.to_dict())
    else:
        typer.echo(report.text())


@app.command("stop")
def stop_command(
    promote: bool = typer.Option(
        False, "--promote", help="The challenger goes live (bake, auto-rollback, aliases)."
    ),
    abort: bool = typer.Option(False, "--abort", help="End the experiment; the champion stays."),
    reason: str = typer.Option("manual", "--reason", help="Why, for the record."),
    endpoints: list[str] | None = ENDPOINT_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """End the online phase on every endpoint: --promote or --abort (one of them)."""
    from citeops.tasks.release.online import conclude_experiment

    if promote == abort:
        raise typer.BadParameter("give exactly one of --promote or --abort")
    settings = settings_for(endpoints)
    info(f"ab stop: {'promote' if promote else 'abort'}")
    with stage_progress(), endpoints_client(settings) as (client, urls):
        record = conclude_experiment(
            settings, client, urls, "promote" if promote else "abort", reason
        )
    if as_json:
        print_json(record)
    else:
        _print_record(record)


def register(app_root: typer.Typer) -> None:
    """Add ``citeops ab`` to the root app."""
    app_root.add_typer(app, name="ab")
