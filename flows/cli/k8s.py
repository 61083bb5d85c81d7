"""`citeops k8s render`: the Kubernetes manifests of the production deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from citeops.flows.cli.common import info, print_json, settings_from

app = typer.Typer(help="Kubernetes manifests rendered from the settings.", no_args_is_help=True)


@app.command("render")
def render(
    out: Annotated[Path, typer.Option("--out", help="folder to write the manifests into")],
    profile: Annotated[
        str | None, typer.Option("--profile", help="settings profile (default: production)")
    ] = "production",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """Write serving, Prefect worker and MLflow manifests (YAML) and the GPU work pool's
    base job template (JSON) into OUT; Secrets are referenced by name, never written."""
    from citeops.tasks.stack.k8s import write_manifests

    settings = settings_from(profile=profile)
    written = write_manifests(settings, out)
    for path in written:
        info(f"wrote {path}")
    if json_out:
        print_json({"out": str(out), "files": [path.name for path in written]})
