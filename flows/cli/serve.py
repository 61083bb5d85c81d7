"""`citeops serve` (registered on the root app)."""

from __future__ import annotations

import typer

from citeops.flows.cli.common import info, settings_from


def register(app: typer.Typer) -> None:
    """Add the serving commands to the root app."""
    app.command("serve")(serve)


def serve(
    host: str | None = typer.Option(None, help="Interface to bind (serve.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="TCP port (serve.port, 8000)."),
    model_uri: str | None = typer.Option(
        None,
        help="Model to serve: models:/name/version, models:/name@alias, runs:/..., or a folder. "
        "Default: the persisted live slot, else models:/<registered_model>@champion.",
    ),
) -> None:
    """Serve the claim verifier over HTTP (the app at /app, OpenAPI docs at /docs).

    A --model-uri that cannot be loaded stops the command; without one, a missing
    champion leaves the server up but not ready until a model is deployed.
    """
    from citeops.serving.server import run_server

    run_server(settings_from(serve={"host": host, "port": port}), model_uri, progress=info)
