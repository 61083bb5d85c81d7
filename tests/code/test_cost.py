"""`citeops cost`: training-run cost by accelerator kind and the monthly estimate, on a
fixed record set (runs in a real MLflow store, files on disk)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from citeops.configs.settings import Settings, load_settings
from citeops.flows.cli import app
from citeops.flows.cli.common import run_cli
from citeops.tasks.stack.cost import HOURS_PER_MONTH, estimate_costs
from citeops.tasks.tracking import mlflow_client


def record_runs(settings: Settings, now: datetime) -> None:
    """Three training runs in the window (cuda 2 h, cpu 10 h, an unknown kind 1 h), one
    outside it, and a validation run with no device-hours."""
    client = mlflow_client(settings)
    experiment = client.create_experiment(
        settings.mlflow.experiment, artifact_location=settings.mlflow.artifact_location
    )
    runs = [
        ("retrain v2", "cuda", 2.0, 1),
        ("retrain v3", "cpu", 10.0, 5),
        ("train tpu", "tpu", 1.0, 10),
        ("too old", "cuda", 100.0, 45),
    ]
    for name, device, hours, days_ago in runs:
        started = int((now - timedelta(days=days_ago)).timestamp() * 1000)
        run = client.create_run(experiment, start_time=started, run_name=name)
        client.log_metric(run.info.run_id, "device_hours", hours)
        client.set_tag(run.info.run_id, "device_type", device)
    client.create_run(experiment, run_name="validate v3 vs v2")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "home"
    monkeypatch.setenv("CITEOPS_HOME", str(home))
    cost = {
        "device_hour_usd": {"cpu": 0.1, "cuda": 0.5},
        "default_device_hour_usd": 2.0,
        "serving_replica_hour_usd": 0.05,
        "storage_gb_month_usd": 1000.0,
        "tools_month_usd": 20.0,
    }
    monkeypatch.setenv("CITEOPS_COST", json.dumps(cost))
    return load_settings(profile="test")


def test_runs_are_costed_by_accelerator_kind_and_summed_into_the_month(
    settings: Settings,
) -> None:
    now = datetime.now(UTC)
    record_runs(settings, now)
    logs = Path(settings.log_root)
    (logs / "queries" / "date=2026-12-01").mkdir(parents=True)
    (logs / "queries" / "date=2026-12-01" / "part.jsonl").write_bytes(b"x" * 1_000_000)
    report = estimate_costs(settings, replicas=2, now=now)
    costs = {run.run_name: run.usd for run in report.training_runs}
    assert costs == {"retrain v2": 1.0, "retrain v3": 1.0, "train tpu": 2.0}
    assert report.training_usd == pytest.approx(4.0)  # a 30-day window: the month itself
    assert report.inference_hours == 2 * HOURS_PER_MONTH
    assert report.inference_usd == pytest.approx(2 * HOURS_PER_MONTH * 0.05)
    assert report.storage_gb >= 0.001  # the log part at least (and the MLflow store)
    assert report.storage_usd == pytest.approx(report.storage_gb * 1000.0)
    assert report.tools_usd == 20.0
    assert report.monthly_usd == pytest.approx(
        4.0 + report.inference_usd + report.storage_usd + 20.0
    )


def test_cost_json_is_one_document(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(app, ["cost", "--json", "--replicas", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["replicas"] == 3 and payload["training_runs"] == []
    assert payload["monthly_usd"] == pytest.approx(
        payload["inference_usd"] + payload["storage_usd"] + payload["tools_usd"]
    )
