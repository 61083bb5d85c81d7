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
    """Serve the claim verifier over HTTP (OpenAPI docs at /docs).

    A --model-uri that cannot be loaded stops the command; without one, a missing
    champion leaves the server up but not ready until a model is deployed.
    """
    import logging

    import uvicorn

    from citeops.serving.app import apply_omp_wait_policy, create_app, default_loader, startup_uri
    from citeops.tasks.errors import CiteopsError

    settings = settings_from(serve={"host": host, "port": port})
    apply_omp_wait_policy(settings)
    load_uri, shown_uri = startup_uri(settings, model_uri)
    info(f"loading {shown_uri} ({settings.serve.precision})")
    try:
        verifier = default_loader(settings)(load_uri)
    except CiteopsError as error:
        if model_uri:  # a URI the user gave: stop with one line
            raise
        info(f"warning: no model loaded ({error}); /ready answers 503 until POST /admin/deploy")
        verifier = None
    if settings.admin_token is None:
        info("admin routes are disabled: no admin token (set CITEOPS_ADMIN_TOKEN)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, model_uri, initial=verifier)
    info(f"serving on http://{settings.serve.host}:{settings.serve.port} (docs at /docs)")
    uvicorn.run(
        app, host=settings.serve.host, port=settings.serve.port, log_level="warning", lifespan="on"
    )
