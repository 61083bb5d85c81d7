"""`citeops serve` and `citeops bench serve` (registered on the root and bench apps)."""

from __future__ import annotations

import typer

from citeops.flows.cli.common import info, print_json, settings_from


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the serving commands to the root and bench apps."""
    app.command("serve")(serve)
    bench_app.command("serve")(bench_serve)


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


def bench_serve(
    model_uri: str | None = typer.Option(
        None, help="Model to benchmark (default: MiniLM with an untrained head, saved to a folder)."
    ),
    clients: str = typer.Option("1,4,16,32", help="Comma-separated concurrency levels."),
    seconds: float = typer.Option(12.0, min=1.0, help="Load time per concurrency level."),
    swap_requests: int = typer.Option(5000, min=0, help="Requests in the swap test (0: skip)."),
    swap_clients: int = typer.Option(16, min=1, help="Concurrent clients in the swap test."),
    swap_every: float = typer.Option(1.0, min=0.1, help="Seconds between deploys / rollbacks."),
    precision: str | None = typer.Option(None, help="Serving precision (serve.precision)."),
    tuned_baseline: bool = typer.Option(
        False, help="Give the baseline our serve.omp_wait_policy too (it runs untuned by default)."
    ),
    agreement_pairs: int = typer.Option(
        0, min=0, help="Also check serve.precision against fp32 in-process on N test pairs."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Throughput and latency of `citeops serve` against a per-request transformers
    pipeline server (fp32, same model), plus a blue-green swap test under load."""
    from citeops.serving.app import apply_omp_wait_policy
    from citeops.serving.bench import BenchOptions, format_report, run_serve_bench

    settings = settings_from(serve={"precision": precision})
    apply_omp_wait_policy(settings)  # for the in-process agreement check
    options = BenchOptions(
        model_uri=model_uri,
        clients=tuple(int(c) for c in clients.split(",") if c.strip()),
        seconds=seconds,
        swap_requests=swap_requests,
        swap_clients=swap_clients,
        swap_every=swap_every,
        tuned_baseline=tuned_baseline,
        agreement_pairs=agreement_pairs,
    )
    report = run_serve_bench(settings, options, progress=info)
    if as_json:
        print_json(report)
    else:
        typer.echo(format_report(report))
