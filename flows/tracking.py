"""The one place a citeops entry point points MLflow's process default at its store.

MLflow's fluent API (``start_run``, ``log_model``, ``log_input``) reads a process-wide
tracking URI; stage code never sets it (:mod:`citeops.tasks.tracking`). Entry points do,
once they have their settings: the CLI commands (through
:func:`citeops.flows.cli.common.settings_from`), the flows and the benchmarks' entry
functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


def use_mlflow(settings: Settings) -> Settings:
    """Make the settings' MLflow store the process default (tracking and registry), its
    HTTP requests bounded by ``mlflow.request_timeout_seconds`` and ``request_max_retries``;
    returns ``settings`` so that an entry point can write ``use_mlflow(load_settings())``."""
    import os

    import mlflow

    # MLflow reads its HTTP bounds from the environment; unset, an unreachable tracking
    # server holds a run in retries at growing intervals for minutes
    timeout = max(1, round(settings.mlflow.request_timeout_seconds))  # MLflow takes whole seconds
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow.request_max_retries)
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)
    return settings
