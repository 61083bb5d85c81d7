"""`citeops up`, `citeops down`, `citeops status`, `citeops deploy`: the local stack
(Prefect server, MLflow server, serving endpoint, Prefect worker) for the chosen profile."""

from __future__ import annotations

from typing import Annotated

import typer

from citeops.flows.cli.common import info, print_json, settings_from

ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="settings profile: local, production, test")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]


def register(app: typer.Typer) -> None:
    """Add the stack commands to the root app."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("deploy")(deploy)
    app.command("cost")(cost)


def up(
    profile: ProfileOption = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="start only these services (repeatable): "
            "prefect-server, mlflow-server, serving, prefect-worker",
        ),
    ] = None,
    no_deploy: Annotated[
        bool, typer.Option("--no-deploy", help="do not (re)deploy the flows from prefect.yaml")
    ] = False,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="do not start the serving endpoint")
    ] = False,
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            min=1,
            help="serving replicas (over 1: behind an HAProxy load balancer on serve.port)",
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Start the stack and wait until every part answers; starting twice is harmless."""
    from citeops.tasks.stack.errors import StackError
    from citeops.tasks.stack.stack import stack_up

    stack = {
        "deploy_on_up": False if no_deploy else None,
        "serve": False if no_serve else None,
        "replicas": replicas,
    }
    settings = settings_from(profile=profile, stack=stack)
    info(f"citeops up: profile {settings.profile}, state in {settings.state_dir}")
    states = stack_up(settings, only, note=info)
    _report(states, json_out)
    failed = [s.name for s in states if s.state == "failed"]
    if failed:
        raise StackError(f"{', '.join(failed)} did not start (see above); the rest is running")


def down(profile: ProfileOption = None, json_out: JsonOption = False) -> None:
    """Stop exactly the processes `citeops up` started (recorded in the state folder)."""
    from citeops.tasks.stack.stack import stack_down

    settings = settings_from(profile=profile)
    _report(stack_down(settings), json_out)


def status(profile: ProfileOption = None, json_out: JsonOption = False) -> None:
    """Show each part of the stack: running and answering, or not; URLs, PIDs, logs."""
    from citeops.tasks.stack.stack import stack_config, stack_status

    settings = settings_from(profile=profile)
    states = stack_status(settings)
    if json_out:
        print_json({"config": stack_config(settings), "services": [s.as_dict() for s in states]})
        return
    for key, value in stack_config(settings).items():
        typer.echo(f"{key:30s} {value}")
    typer.echo("")
    _report(states, False)


def deploy(profile: ProfileOption = None) -> None:
    """Create the work pools and deploy every flow in prefect.yaml to the Prefect API."""
    from citeops.tasks.stack.deploy import deploy_flows

    settings = settings_from(profile=profile)
    log = deploy_flows(settings)
    typer.echo(f"deployed prefect.yaml to {settings.stack.prefect_api_url} (log {log})")


def _report(states: list, json_out: bool) -> None:
    if json_out:
        print_json([s.as_dict() for s in states])
        return
    for s in states:
        pid = f"pid {s.pid}" if s.pid else ""
        line = f"{s.name:15s} {s.state:24s} {pid:10s} {s.url or ''}"
        typer.echo(line.rstrip())
        if s.note:
            typer.echo(f"{'':15s} {s.note.splitlines()[0]}")


def cost(
    profile: ProfileOption = None,
    replicas: Annotated[
        int | None,
        typer.Option("--replicas", min=0, help="serving replicas (default: promote.endpoints)"),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """The training runs of the last cost.window_days days with their cost, and a monthly
    estimate: inference hours, storage, training runs, tools (rates: cost.*)."""
    from citeops.tasks.stack.cost import estimate_costs

    settings = settings_from(profile=profile)
    count = len(settings.serving_endpoints) if replicas is None else replicas
    report = estimate_costs(settings, count)
    if json_out:
        print_json(report.to_dict())
        return
    for run in report.training_runs:
        info(f"{run.started[:16]}  {run.run_name:32s} {run.device_hours:8.3f} {run.device_type}-h"
             f"  ${run.usd:.2f}")  # fmt: skip
    info(f"monthly estimate (from the last {report.window_days} days): ${report.monthly_usd:.2f}")
    info(f"  training runs  ${report.training_usd:.2f} ({len(report.training_runs)} runs)")
    info(f"  inference      ${report.inference_usd:.2f} ({report.replicas} replicas, "
         f"{report.inference_hours:.0f} h; {report.requests} requests recorded)")  # fmt: skip
    info(f"  storage        ${report.storage_usd:.2f} ({report.storage_gb:.3f} GB)")
    info(f"  tools          ${report.tools_usd:.2f}")
