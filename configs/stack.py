"""Settings of the servers around the loop: MLflow, S3, and the local stack."""

from __future__ import annotations

from pydantic import Field

from citeops.configs.base import Section


class MlflowSettings(Section):
    """Tracking server and registry."""

    tracking_uri: str | None = None
    """Where runs are tracked (None: SQLite under home)."""
    artifact_location: str | None = None
    """Artifact location of new experiments (None: a folder under home)."""
    experiment: str = "citeops"
    """Experiment of training and validation runs."""
    registered_model: str = "claim-verifier"
    """The one registered model."""
    server_host: str = "127.0.0.1"
    """Address `mlflow server` listens on."""
    server_port: int = Field(5000, ge=1, le=65535)
    """Port `mlflow server` listens on."""
    backend_store_uri: str | None = None
    """What `mlflow server` stores runs in (None: `tracking_uri`)."""
    artifacts_destination: str | None = None
    """Where `mlflow server` proxies artifacts to (None: `artifact_location`)."""
    server_workers: int = Field(2, ge=1)
    """Uvicorn workers of `mlflow server`."""
    db_upgrade: bool = True
    """Run `mlflow db upgrade` before the server starts."""
    request_timeout_seconds: float = Field(30.0, gt=0)
    """Bound of one HTTP request to the tracking server (MLFLOW_HTTP_REQUEST_TIMEOUT)."""
    request_max_retries: int = Field(2, ge=0)
    """Retries of a failed request to the tracking server (MLFLOW_HTTP_REQUEST_MAX_RETRIES):
    with the timeout, how long an unreachable server can hold a run up."""


class S3Settings(Section):
    """S3 access; credentials come only from the standard AWS environment."""

    endpoint_url: str | None = None
    """S3 API endpoint (None: AWS S3)."""
    region: str = "us-east-1"
    """S3 region."""


class StackSettings(Section):
    """The local stack started by `citeops up`."""

    prefect_host: str = "127.0.0.1"
    """Address the Prefect server listens on."""
    prefect_port: int = Field(4200, ge=1, le=65535)
    """Port the Prefect server listens on."""
    prefect_api_url: str | None = None
    """Prefect API URL (None: from host and port)."""
    prefect_database_url: str | None = None
    """Prefect's database (None: Prefect's SQLite under home)."""
    work_pool: str = "local"
    """Process pool served by the worker `citeops up` starts."""
    train_work_pool: str = "local"
    """Pool of the training deployment (a GPU pool in production)."""
    monitor_cron: str = "0 6 * * *"
    """Daily schedule of the monitor deployment (UTC)."""
    worker_poll_seconds: float = Field(5.0, gt=0)
    """How often the worker polls for runs."""
    health_timeout_seconds: float = Field(120.0, gt=0)
    """How long `citeops up` waits for a server to answer."""
    stop_timeout_seconds: float = Field(20.0, gt=0)
    """How long `citeops down` waits before killing a process."""
    deploy_on_up: bool = True
    """`citeops up` also deploys the flows from prefect.yaml."""
    serve: bool = True
    """`citeops up` also starts the serving endpoint."""
    replicas: int = Field(1, ge=1)
    """Serving replicas `citeops up` starts; over 1, on serve.port + 1 ... + N behind an
    HAProxy load balancer on serve.port."""
    balancer_check_ms: int = Field(500, ge=50)
    """How often the load balancer checks each replica's /ready (2 failures: out)."""


class CostSettings(Section):
    """Rates of `citeops cost`: the monthly estimate in the categories of AI4citations'
    deployment plan (inference hours, storage, training runs, tools), in USD."""

    device_hour_usd: dict[str, float] = {"cpu": 0.0928, "cuda": 0.526}
    """Rate of one device-hour of training per accelerator kind (defaults: an AWS m7i.large
    and a g4dn.xlarge on demand); a kind not listed costs `default_device_hour_usd`."""
    default_device_hour_usd: float = Field(0.526, ge=0)
    """Rate of a device kind missing from `device_hour_usd`."""
    serving_replica_hour_usd: float = Field(0.0928, ge=0)
    """Rate of one serving replica-hour (the replicas run around the clock)."""
    storage_gb_month_usd: float = Field(0.023, ge=0)
    """Rate of one GB-month of stored logs, store and model artifacts (S3 standard)."""
    tools_month_usd: float = Field(0.0, ge=0)
    """Monthly cost of the tools (hosted Prefect, MLflow, dashboards), as contracted."""
    window_days: int = Field(30, ge=1)
    """How far back `citeops cost` reads what was recorded."""

    def device_hour_rate(self, device_type: str) -> float:
        """USD per device-hour of ``device_type`` (``cpu``, ``cuda``, ...)."""
        return self.device_hour_usd.get(device_type, self.default_device_hour_usd)
