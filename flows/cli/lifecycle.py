"""`citeops retrain`, `promote`, `rollback`, `history`: the model lifecycle commands.

Each runs the matching Prefect flow locally; refusals (gate, endpoint, lock) print one
line with the reason and exit with status 2.
"""

from __future__ import annotations

from typing import Any

import typer

from citeops.flows.cli.common import (
    info,
    print_json,
    quiet_refusals,
    settings_from,
    stage_progress,
)

OUTCOME_EXIT = {"promoted": 0, "skipped": 0, "rollback": 0}


def _print_record(record: dict[str, Any]) -> None:
    typer.echo(
        f"{record['kind']} #{record['id']}: {record['outcome']}  "
        f"version {record['version'] or '-'} (champion before: {record['previous_version'] or '-'})"
    )
    if record.get("detail"):
        typer.echo(f"  {record['detail']}")


def _gate_text(gate: dict[str, Any] | None) -> str | None:
    """The gate table for the terminal, rebuilt from a stored decision."""
    return (gate or {}).get("text_table")


def retrain_command(
    force: bool = typer.Option(False, "--force", help="Retrain even if the trigger did not fire."),
    as_json: bool = typer.Option(False, "--json", help="Print the promotion record as JSON."),
) -> None:
    """Run the retrain flow here: train, validate against the champion, gate, promote."""
    from citeops.flows.retrain import retrain
    from citeops.tasks.errors import CiteopsError
    from citeops.tasks.stack.processes import prefect_server_dies_with_us
    from citeops.tasks.store.promotions import list_records

    settings = settings_from()
    prefect_server_dies_with_us()
    info(f"retrain{' (forced)' if force else ''}: MLflow {settings.mlflow.tracking_uri}")
    try:
        with stage_progress(), quiet_refusals():
            retrain(force=force)
        error: CiteopsError | None = None
    except CiteopsError as refused:
        error = refused
    record = list_records(settings, limit=1)[0].to_dict()
    if as_json:
        print_json(record)
    else:
        table = _gate_text(record.get("gate"))
        if table:
            typer.echo(table)
        _print_record(record)
    if error is not None:
        raise error


def promote_command(
    version: int = typer.Option(..., "--version", help="The registered version to promote."),
    skip_gate: bool = typer.Option(
        False, "--skip-gate", help="Promote without the gate (recorded as such)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the promotion record as JSON."),
) -> None:
    """Promote an existing version: gate, blue-green deploy with bake, aliases."""
    from citeops.flows.promote import promote
    from citeops.tasks.stack.processes import prefect_server_dies_with_us

    prefect_server_dies_with_us()
    with stage_progress(), quiet_refusals():
        record = promote(version=version, skip_gate=skip_gate)
    if as_json:
        print_json(record)
    else:
        _print_record(record)


def rollback_command(
    as_json: bool = typer.Option(False, "--json", help="Print the rollback record as JSON."),
) -> None:
    """Undo the last promotion: endpoints back to the previous model, aliases back."""
    from citeops.flows.rollback import rollback
    from citeops.tasks.stack.processes import prefect_server_dies_with_us

    prefect_server_dies_with_us()
    with stage_progress(), quiet_refusals():
        record = rollback()
    if as_json:
        print_json(record)
    else:
        _print_record(record)


def history_command(
    limit: int = typer.Option(20, min=1, help="Show at most N records of each kind."),
    as_json: bool = typer.Option(
        False, "--json", help='Print {"promotions": [...], "decisions": [...]} as JSON.'
    ),
) -> None:
    """Promotion records and retrain decisions, newest first: kind, outcome, version,
    cost, trigger causes."""
    from citeops.tasks.release.reconcile import reconcile
    from citeops.tasks.store.decisions import list_decisions
    from citeops.tasks.store.promotions import list_records

    settings = settings_from()
    reconcile(settings)  # a killed run's record shows as abandoned, not running for ever
    records = [r.to_dict() for r in list_records(settings, limit=limit)]
    decisions = list_decisions(settings, limit=limit)
    if as_json:
        print_json({"promotions": records, "decisions": decisions})
        return
    if not records and not decisions:
        typer.echo("no promotion records or retrain decisions yet (run `citeops retrain`)")
        return
    typer.echo(
        f"{'#':>4}  {'kind':8}  {'outcome':12}  {'version':>7}  {'before':>6}  "
        f"{'cost $':>7}  {'started (UTC)':19}  trigger"
    )
    rows = [_record_row(r) for r in records] + [_decision_row(d) for d in decisions]
    for _, row in sorted(rows, reverse=True)[:limit]:
        typer.echo(row)


def _record_row(r: dict[str, Any]) -> tuple[str, str]:
    """(start time, the history line) of a promotion record."""
    causes = "+".join((r.get("trigger") or {}).get("causes") or []) or "-"
    from citeops.tasks.release.online_report import online_summary

    cost = f"{r['cost_usd']:.4f}" if r.get("cost_usd") is not None else "-"
    online = online_summary(r.get("gate"))
    return r["started_at"], (
        f"{r['id']:>4}  {r['kind']:8}  {r['outcome']:12}  {r['version'] or '-':>7}  "
        f"{r['previous_version'] or '-':>6}  {cost:>7}  {r['started_at'][:19]:19}  {causes}"
        + (f"\n{'':6}{online}" if online else "")
    )


def _decision_row(d: dict[str, Any]) -> tuple[str, str]:
    """(decision time, the history line) of a retrain decision; its outcome says whether
    a retraining run was started."""
    started = (d.get("deployment") or {}).get("started")
    outcome = ("started" if started else "retrain") if d["retrain"] else "no retrain"
    causes = "+".join(d["causes"]) or "-"
    return d["decided_at"], (
        f"{d['id']:>4}  {'decision':8}  {outcome:12}  {'-':>7}  {'-':>6}  {'-':>7}  "
        f"{d['decided_at'][:19]:19}  {causes}"
    )


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to the root app."""
    app.command("retrain")(retrain_command)
    app.command("promote")(promote_command)
    app.command("rollback")(rollback_command)
    app.command("history")(history_command)
