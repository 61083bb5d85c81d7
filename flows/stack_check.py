"""The stack-check flow: proves that a flow run started by a worker reaches the MLflow
server (artifacts through its proxy) and the log root, and publishes a short report as a
Prefect artifact. Deployed from prefect.yaml; quick, so it is the first thing to run
after `citeops up`."""

from __future__ import annotations

from typing import Any

from prefect import flow, task


@task(name="probe-mlflow", retries=2, retry_delay_seconds=[2, 5])
def mlflow_probe() -> dict[str, Any]:
    """Thin task over :func:`tasks.stack.checks.probe_mlflow`."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.stack.checks import probe_mlflow

    return probe_mlflow(load_settings())


@task(name="probe-log-root", retries=2, retry_delay_seconds=[2, 5])
def log_root_probe() -> dict[str, Any]:
    """Thin task over :func:`tasks.stack.checks.probe_log_root`."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.stack.checks import probe_log_root

    return probe_log_root(load_settings())


@task(name="publish-stack-report")
def stack_report(mlflow_result: dict[str, Any], log_result: dict[str, Any]) -> str:
    """Publish the probes' results as the markdown artifact ``stack-check``."""
    from prefect.artifacts import create_markdown_artifact

    from citeops.tasks.stack.checks import stack_check_markdown

    markdown = stack_check_markdown(mlflow_result, log_result)
    create_markdown_artifact(
        key="stack-check", markdown=markdown, description="citeops stack check"
    )
    return markdown


@flow(name="stack-check")
def stack_check() -> dict[str, Any]:
    """Probe MLflow and the log root, then report; returns both probes' results."""
    mlflow_result = mlflow_probe()
    log_result = log_root_probe()
    stack_report(mlflow_result, log_result)
    return {"mlflow": mlflow_result, "log_root": log_result}
