"""What the loop costs: each training run (device-hours x the rate of its accelerator
kind) and a monthly estimate in the categories of AI4citations' deployment plan
(inference hours, storage, training runs, tools), from what MLflow and the store recorded
over the last ``cost.window_days`` days (`citeops cost`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.ingest.sources import list_objects, resolve_root
from citeops.tasks.tracking import mlflow_client

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

HOURS_PER_MONTH = 730.0  # 365 * 24 / 12
GB = 1e9


@dataclass(frozen=True)
class TrainingRunCost:
    run_id: str
    run_name: str
    started: str
    device_type: str
    device_hours: float
    usd: float


@dataclass
class CostReport:
    """The window's figures and the monthly estimate (``monthly_usd``), in USD."""

    window_days: int
    training_runs: list[TrainingRunCost] = field(default_factory=list)
    training_usd: float = 0.0
    replicas: int = 0
    inference_hours: float = 0.0
    inference_usd: float = 0.0
    requests: int = 0
    storage_gb: float = 0.0
    storage_usd: float = 0.0
    tools_usd: float = 0.0
    monthly_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_run_costs(settings: Settings, since: datetime) -> list[TrainingRunCost]:
    """Every run of the experiment since ``since`` that recorded its device-hours."""

    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"attributes.start_time >= {int(since.timestamp() * 1000)}",
        max_results=5000,
    )
    out = []
    for run in runs:
        hours = run.data.metrics.get("device_hours")
        if hours is None:
            continue
        device = run.data.tags.get("device_type", "cpu")
        started = datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat()
        name = run.info.run_name or run.info.run_id
        rate = settings.cost.device_hour_rate(device)
        out.append(TrainingRunCost(run.info.run_id, name, started, device, hours, hours * rate))
    return sorted(out, key=lambda run: run.started)


def requests_since(settings: Settings, since: datetime) -> int:
    """Queries the store holds since ``since`` (ingested query-log lines)."""
    from sqlalchemy import func, select

    from citeops.tasks.store.schema import open_store, queries, utc_naive

    with open_store(settings) as engine, engine.connect() as conn:
        query = select(func.count()).where(queries.c.datetime >= utc_naive(since))
        return int(conn.execute(query).scalar_one())


def folder_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 when it does not exist)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def stored_bytes(settings: Settings) -> int:
    """Bytes of the logs, the store and the model artifacts where they are local files;
    S3 log roots are listed (their objects' sizes)."""

    root = resolve_root(settings, None)
    if root.startswith("s3://"):
        total = sum(obj.size for obj in list_objects(settings, root, missing_ok=True).objects)
    else:
        total = folder_bytes(Path(root))
    for uri in (settings.store_url, settings.mlflow.tracking_uri):
        if uri and uri.startswith("sqlite:///"):
            total += folder_bytes(Path(uri[len("sqlite:///") :]))
    artifacts = settings.mlflow.artifact_location
    if artifacts and "://" not in artifacts.replace("file://", ""):
        total += folder_bytes(Path(artifacts.replace("file://", "")))
    return total


def estimate_costs(settings: Settings, replicas: int, now: datetime | None = None) -> CostReport:
    """The window's recorded costs, scaled to a month where they accrue over time.

    Training is what the window's runs cost (scaled to a month); inference is the replicas
    running around the clock; storage is what is held now, for a month; tools are the
    contracted monthly figure.
    """
    now = now or datetime.now(UTC)
    window = settings.cost.window_days
    since = now - timedelta(days=window)
    report = CostReport(window_days=window, replicas=replicas)
    report.training_runs = training_run_costs(settings, since)
    report.training_usd = sum(run.usd for run in report.training_runs) * 30.0 / window
    report.inference_hours = replicas * HOURS_PER_MONTH
    report.inference_usd = report.inference_hours * settings.cost.serving_replica_hour_usd
    report.requests = requests_since(settings, since)
    report.storage_gb = stored_bytes(settings) / GB
    report.storage_usd = report.storage_gb * settings.cost.storage_gb_month_usd
    report.tools_usd = settings.cost.tools_month_usd
    report.monthly_usd = (
        report.training_usd + report.inference_usd + report.storage_usd + report.tools_usd
    )
    return report
