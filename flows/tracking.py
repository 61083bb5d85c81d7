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
    """Make the settings' MLflow store the process default (tracking and registry);
    returns ``settings`` so that an entry point can write ``use_mlflow(load_settings())``."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_registry_uri(settings.mlflow.tracking_uri)
    return settings
