"""Probes run by the `stack-check` flow: can a flow run started by a worker reach the
MLflow server (and, through its artifact proxy, the artifact store) and the log root?

Each probe writes something small and reads it back, so a pass means the path works end
to end, not merely that a port is open. Nothing secret is logged: only the profile name.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.s3 import s3_client, split_s3_uri
from citeops.tasks.tracking import mlflow_client

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

PROBE_ARTIFACT = "stack-check/probe.json"


def probe_experiment_name(settings: Settings) -> str:
    return f"{settings.mlflow.experiment}-stack-check"


def _probe_artifact_location(settings: Settings) -> str:
    return f"{str(settings.mlflow.artifact_location).rstrip('/')}-stack-check"


def probe_mlflow(settings: Settings) -> dict[str, Any]:
    """Log a run with one parameter, one metric and one small artifact, then read the
    artifact back through the tracking server. Returns run id, artifact URI and the
    artifact's content."""

    client = mlflow_client(settings)
    name = probe_experiment_name(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = client.create_experiment(name, _probe_artifact_location(settings))
    else:
        experiment_id = experiment.experiment_id
    payload = {"probe": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat()}
    run = client.create_run(experiment_id, run_name="stack-check")
    run_id = run.info.run_id
    client.log_param(run_id, "profile", settings.profile)
    client.log_metric(run_id, "probe", 1.0)
    client.log_dict(run_id, payload, PROBE_ARTIFACT)
    client.set_terminated(run_id)
    with tempfile.TemporaryDirectory(prefix="citeops-probe-") as tmp:
        local = client.download_artifacts(run_id, PROBE_ARTIFACT, tmp)
        text = Path(local).read_text()
    if json.loads(text) != payload:
        raise RuntimeError("the probe artifact read back differs from what was written")
    return {"run_id": run_id, "artifact_uri": run.info.artifact_uri, "probe": payload["probe"]}


def probe_log_root(settings: Settings) -> dict[str, Any]:
    """Write ``stack-check/<uuid>.json`` under the log root (folder or S3) and read it back."""

    body = json.dumps({"probe": uuid.uuid4().hex}).encode()
    key = f"stack-check/{uuid.uuid4().hex}.json"
    root = str(settings.log_root)
    if settings.is_s3_log_root:
        bucket, prefix = split_s3_uri(root)
        full_key = f"{prefix}/{key}" if prefix else key
        client = s3_client(settings)
        client.put_object(Bucket=bucket, Key=full_key, Body=body)
        read = client.get_object(Bucket=bucket, Key=full_key)["Body"].read()
        uri = f"s3://{bucket}/{full_key}"
    else:
        path = Path(root.removeprefix("file://")) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        read = path.read_bytes()
        uri = str(path)
    if read != body:
        raise RuntimeError(f"{uri}: the object read back differs from what was written")
    return {"uri": uri, "bytes": len(body)}


def stack_check_markdown(mlflow_result: dict[str, Any], log_result: dict[str, Any]) -> str:
    """The report the flow publishes as a Prefect artifact."""
    return "\n".join(
        [
            "# citeops stack check",
            "",
            "| probe | result |",
            "| --- | --- |",
            f"| MLflow run | `{mlflow_result['run_id']}` |",
            f"| MLflow artifacts | `{mlflow_result['artifact_uri']}` |",
            f"| log root object | `{log_result['uri']}` ({log_result['bytes']} bytes) |",
        ]
    )
