"""MLflow access from settings, without process-wide state.

Stage code builds its client with :func:`mlflow_client` (tracking and registry URI both
from the settings) and never changes MLflow's process defaults: a serving process that
deploys models from two stores, or a test that uses a store per test, sees no leak from
one to the other. MLflow's fluent API (``mlflow.start_run``, ``log_model``,
``log_input``) has no URI argument: it uses the process default, which only entry points
(the CLI, the flows, the benchmarks' entry functions, tests) set
(:func:`citeops.flows.tracking.use_mlflow`). Stage code that opens a fluent run first
calls :func:`require_fluent_tracking`, so a missing set-up fails with one clear line
instead of logging into a stray ``./mlruns``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from mlflow import MlflowClient


class TrackingUnavailable(CiteopsError):
    """The MLflow tracking server did not answer within ``mlflow.request_timeout_seconds``
    and ``mlflow.request_max_retries`` (down, killed, unreachable)."""


def is_failed_request(error: BaseException) -> bool:
    """True when ``error`` is an HTTP request to the tracking server that failed for good
    (MLflow's REST client gave up after its retries, or ``requests`` raised)."""
    library = type(error).__module__.split(".", 1)[0]
    return library == "requests" or (
        library == "mlflow" and str(error).lstrip().startswith("API request to")
    )


def tracking_outage(settings: Settings, error: BaseException) -> str | None:
    """One line naming the tracking server and why it did not answer, when ``error`` is a
    failed request to it (:func:`is_failed_request`); else
    ``None`` (any other error is not an outage and keeps its own type and message)."""
    if not is_failed_request(error):
        return None
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    for marker in ("Caused by ", "failed with exception "):  # the innermost cause is the news
        if marker in reason:
            reason = reason.rsplit(marker, 1)[-1].strip("()'\" ")
    reason = reason if len(reason) <= 200 else reason[:197] + "..."
    return f"MLflow tracking server {settings.mlflow.tracking_uri} did not answer ({reason})"


def tracking_unavailable(settings: Settings, error: BaseException) -> TrackingUnavailable | None:
    """``error`` as a :class:`TrackingUnavailable` (one line, what to do) when it is a
    failed request to the tracking server (:func:`tracking_outage`), else ``None``."""
    outage = tracking_outage(settings, error)
    if outage is None:
        return None
    return TrackingUnavailable(f"{outage}: run the command again once it answers")


class TrackingNotSet(CiteopsError):
    """MLflow's process default is not the store the settings name (an entry point did
    not call :func:`citeops.flows.tracking.use_mlflow`)."""


def mlflow_client(settings: Settings) -> MlflowClient:
    """A client on the settings' tracking URI, with the registry on the same URI (passed
    explicitly: otherwise MLflow would take a registry URI set elsewhere in the process)."""
    from mlflow import MlflowClient

    uri = settings.mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def require_fluent_tracking(settings: Settings) -> None:
    """Raise :class:`TrackingNotSet` unless MLflow's process-wide tracking and registry
    URIs are the settings' (what the fluent API about to be used will write to)."""
    import mlflow

    wanted = str(settings.mlflow.tracking_uri)
    found = {"tracking": mlflow.get_tracking_uri(), "registry": mlflow.get_registry_uri()}
    wrong = {kind: uri for kind, uri in found.items() if uri != wanted}
    if wrong:
        seen = ", ".join(f"{kind} URI {uri!r}" for kind, uri in wrong.items())
        raise TrackingNotSet(
            f"MLflow is pointed at {seen}, the settings at {wanted!r}: call "
            "citeops.flows.tracking.use_mlflow(settings) in the entry point first"
        )


def ensure_experiment(settings: Settings, name: str | None = None) -> str:
    """The id of the experiment ``name`` (default ``mlflow.experiment``), created with the
    configured artifact location if it is new (else artifacts land in ``./mlruns``)."""
    name = name or settings.mlflow.experiment
    client = mlflow_client(settings)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    uri = str(settings.mlflow.tracking_uri)
    if settings.home and uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=settings.mlflow.artifact_location)
