"""The `citeops` command line. Each area registers its commands from its own module.

Heavy libraries (torch, lightning, mlflow, great_expectations) are imported inside the
commands, so `citeops --help` starts fast.
"""

from __future__ import annotations

import os
import sys

import typer

from citeops.flows.cli import ab as ab_cli
from citeops.flows.cli import bench as bench_cli
from citeops.flows.cli import data as data_cli
from citeops.flows.cli import demo as demo_cli
from citeops.flows.cli import docs as docs_cli
from citeops.flows.cli import drift as drift_cli
from citeops.flows.cli import ingest as ingest_cli
from citeops.flows.cli import k8s as k8s_cli
from citeops.flows.cli import lifecycle as lifecycle_cli
from citeops.flows.cli import model as model_cli
from citeops.flows.cli import serve as serve_cli
from citeops.flows.cli import stack as stack_cli
from citeops.flows.cli import tune as tune_cli
from citeops.flows.cli.common import run_cli

app = typer.Typer(
    name="citeops",
    help="citeops: the MLOps loop for the claim-verification model (SUPPORT / NEI / REFUTE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data_cli.app, name="data")
app.add_typer(bench_cli.app, name="bench")
app.add_typer(k8s_cli.app, name="k8s")
model_cli.register(app)
ingest_cli.register(app)
serve_cli.register(app)
drift_cli.register(app)
lifecycle_cli.register(app)
demo_cli.register(app)
stack_cli.register(app)
tune_cli.register(app)
docs_cli.register(app)
ab_cli.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit with status 2."""
    # Flows run without a Prefect server start a local one at their first call; its 20 s
    # start-up limit was exceeded on 2 busy cores (the demo loads a model beside it)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    sys.exit(run_cli(app, argv))
