"""An unreachable tracking server is bounded by our settings, not MLflow's long defaults."""

from __future__ import annotations

import time

import pytest

from citeops.configs.settings import load_settings


def test_use_mlflow_bounds_requests_to_an_unreachable_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pointed at a port nothing listens on, a registry call fails within the bound the
    settings set (timeout 2 s, no retry), where MLflow's defaults retry for minutes."""
    from mlflow.exceptions import MlflowException

    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.stack.processes import free_port
    from citeops.tasks.tracking import mlflow_client

    monkeypatch.setenv("CITEOPS_MLFLOW__TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("CITEOPS_MLFLOW__REQUEST_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("CITEOPS_MLFLOW__REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    settings = use_mlflow(load_settings())
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    started = time.monotonic()
    with pytest.raises(MlflowException):
        mlflow_client(settings).search_registered_models()
    assert time.monotonic() - started < 20
