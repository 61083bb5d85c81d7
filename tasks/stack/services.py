"""The stack's services, built from the settings: what to run, with which environment,
where it listens and how to tell that it is healthy.

Every child process inherits the caller's environment (so ``AWS_*``, ``PGPASSWORD`` and
other secrets reach the servers without being written anywhere) plus ``CITEOPS_PROFILE``
and ``CITEOPS_HOME``, so that flow runs and the serving endpoint read the same settings.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import citeops.configs as configs
from citeops.tasks.release.endpoints import REPLICAS_FILE

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

PREFECT_SERVER = "prefect-server"
MLFLOW_SERVER = "mlflow-server"
SERVING = "serving"
WORKER = "prefect-worker"
SERVICES = (PREFECT_SERVER, MLFLOW_SERVER, SERVING, WORKER)  # start order


@dataclass(frozen=True)
class ServiceSpec:
    """One background process of the stack."""

    name: str
    title: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    cwd: Path
    host: str | None = None
    port: int | None = None
    url: str | None = None  # what a user opens (UI or API root)
    health_url: str | None = None  # None: health is checked another way (worker)
    port_setting: str | None = None  # the variable that moves it to another port
    stop_signal: str = "SIGTERM"


def project_dir() -> Path:
    """The folder holding prefect.yaml, mlflow/ and the flows (the repository root)."""
    return Path(configs.__file__).resolve().parent.parent


def bin_path(name: str) -> str:
    """An executable installed beside the running Python (the project's venv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def prefect_home(settings: Settings) -> Path:
    return settings.home / "prefect"


def prefect_database_url(settings: Settings) -> str:
    """Prefect server's database: the configured URL or SQLite under ``home``."""
    url = settings.stack.prefect_database_url
    return url or f"sqlite+aiosqlite:///{prefect_home(settings) / 'prefect.db'}"


def base_env(settings: Settings) -> dict[str, str]:
    """Environment shared by every child: the caller's, plus the settings' profile and
    home, the Prefect API and Prefect's own state folder (no telemetry: no network)."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["CITEOPS_PROFILE"] = settings.profile
    env["CITEOPS_HOME"] = str(settings.home)
    env["PREFECT_HOME"] = str(prefect_home(settings))
    env["PREFECT_API_URL"] = str(settings.stack.prefect_api_url)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def prefect_server_spec(settings: Settings) -> ServiceSpec:
    stack = settings.stack
    env = base_env(settings)
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_database_url(settings)
    env["PREFECT_UI_API_URL"] = str(stack.prefect_api_url)
    argv = [bin_path("prefect"), "server", "start", "--host", stack.prefect_host]
    argv += ["--port", str(stack.prefect_port), "--analytics-off"]
    base = f"http://{stack.prefect_host}:{stack.prefect_port}"
    return ServiceSpec(
        PREFECT_SERVER,
        "Prefect server (UI + API)",
        argv,
        env,
        project_dir(),
        stack.prefect_host,
        stack.prefect_port,
        base,
        f"{str(stack.prefect_api_url).rstrip('/')}/health",
        "CITEOPS_STACK__PREFECT_PORT",
    )


def mlflow_server_spec(settings: Settings) -> ServiceSpec:
    """`mlflow/start-server.sh` with the backend and artifact stores of the settings."""
    mlflow = settings.mlflow
    env = base_env(settings)
    env["MLFLOW_BACKEND_STORE_URI"] = str(mlflow.backend_store_uri)
    env["MLFLOW_ARTIFACTS_DESTINATION"] = str(mlflow.artifacts_destination)
    env["MLFLOW_SERVER_HOST"] = mlflow.server_host
    env["MLFLOW_SERVER_PORT"] = str(mlflow.server_port)
    env["MLFLOW_SERVER_WORKERS"] = str(mlflow.server_workers)
    env["MLFLOW_DB_UPGRADE"] = "1" if mlflow.db_upgrade else "0"
    env["MLFLOW_BIN"] = bin_path("mlflow")
    if settings.s3.endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3.endpoint_url
    env.setdefault("AWS_DEFAULT_REGION", settings.s3.region)
    script = project_dir() / "mlflow" / "start-server.sh"
    base = f"http://{mlflow.server_host}:{mlflow.server_port}"
    return ServiceSpec(
        MLFLOW_SERVER,
        "MLflow server (UI + tracking + registry)",
        ["bash", str(script)],
        env,
        project_dir(),
        mlflow.server_host,
        mlflow.server_port,
        base,
        f"{base}/health",
        "CITEOPS_MLFLOW__SERVER_PORT",
    )


def serving_spec(settings: Settings) -> ServiceSpec:
    serve = settings.serve
    argv = [bin_path("citeops"), "serve", "--host", serve.host, "--port", str(serve.port)]
    base = f"http://{serve.host}:{serve.port}"
    return ServiceSpec(
        SERVING,
        "serving endpoint",
        argv,
        base_env(settings),
        project_dir(),
        serve.host,
        serve.port,
        base,
        f"{base}/health",
        "CITEOPS_SERVE__PORT",
    )


def replica_spec(serving: ServiceSpec, index: int) -> ServiceSpec:
    """Serving replica ``index`` (1-based) of `up --replicas N`: the endpoint's command on
    serve.port + ``index`` (the load balancer takes serve.port)."""
    import dataclasses

    port = int(serving.port or 0) + index
    argv = [*serving.argv[: serving.argv.index("--port") + 1], str(port)]
    base = f"http://{serving.host}:{port}"
    return dataclasses.replace(
        serving,
        name=f"{SERVING}-{index}",
        title=f"serving replica {index}",
        argv=argv,
        port=port,
        url=base,
        health_url=f"{base}/health",
    )


def write_replicas(state_dir: Path, urls: list[str]) -> Path:
    """Record the replicas' base URLs where promotion reads them (``REPLICAS_FILE``)."""
    import json

    path = state_dir / REPLICAS_FILE
    path.write_text(json.dumps(urls))
    return path


def clear_replicas(state_dir: Path) -> None:
    (state_dir / REPLICAS_FILE).unlink(missing_ok=True)


def worker_name(settings: Settings) -> str:
    return f"citeops-{settings.stack.work_pool}"


def worker_spec(settings: Settings) -> ServiceSpec:
    """A process worker for ``stack.work_pool``, run from the project folder."""
    env = base_env(settings)
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(settings.stack.worker_poll_seconds)
    # flow runs also send the stage loggers' records to their run log (at the level those
    # loggers have; the flows raise it to INFO while they run: citeops.flows.logs)
    env.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "citeops")
    argv = [bin_path("prefect"), "worker", "start", "--pool", settings.stack.work_pool]
    argv += ["--type", "process", "--name", worker_name(settings)]
    title = f"Prefect worker (pool {settings.stack.work_pool!r})"
    # SIGINT: the worker stops cleanly in about a second; on SIGTERM to its whole group
    # it waits for its own signal forwarding and needs the SIGKILL fallback
    return ServiceSpec(WORKER, title, argv, env, project_dir(), stop_signal="SIGINT")


def build_spec(name: str, settings: Settings) -> ServiceSpec:
    builders = {
        PREFECT_SERVER: prefect_server_spec,
        MLFLOW_SERVER: mlflow_server_spec,
        SERVING: serving_spec,
        WORKER: worker_spec,
    }
    return builders[name](settings)
