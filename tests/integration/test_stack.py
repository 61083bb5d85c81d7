"""The production profile end to end, with real servers: `citeops up` starts Prefect server
(PostgreSQL), MLflow server (PostgreSQL + S3 artifacts through its proxy), a Prefect worker
and the serving endpoint; a model goes through the registry; a deployment from
prefect.yaml runs through the REST API as the UI starts it; both UIs are looked at in
headless Chromium; `citeops down` stops exactly what `up` started.

The PostgreSQL databases are created with unique names and dropped afterwards; S3 is a
moto_server bucket. Secrets (a database password, the AWS secret key) are given to the
stack only through the environment and must not show up in any file it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.harness import find_chromium

pytestmark = pytest.mark.integration

PG = "postgres@127.0.0.1:5432"
CITEOPS = str(Path(sys.executable).with_name("citeops"))
CHROMIUM = str(find_chromium() or "chromium")
UI_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Stack:
    env: dict[str, str]
    home: Path
    bucket: str
    prefect_api: str
    prefect_ui: str
    mlflow_url: str
    serve_url: str
    secrets: tuple[str, ...]
    databases: dict[str, str]
    up_output: str


def _psql(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://{PG}/test", autocommit=True) as conn:
        conn.execute(sql)


def citeops(
    stack_env: dict[str, str], *args: str, timeout: float = 400
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CITEOPS, *args], env=stack_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def production_stack(
    tmp_path_factory: pytest.TempPathFactory,
    moto_s3: str,
    data_dir: Path,
    postgres_admin_url: str,  # skips every test of the stack, named once, without PostgreSQL
) -> Iterator[Stack]:
    """`citeops up --no-serve` with the production profile on fresh databases and a fresh
    bucket; `citeops down` and the databases dropped afterwards."""
    import boto3

    tag = uuid.uuid4().hex[:10]
    dbs = {name: f"citeops_{name}_{tag}" for name in ("mlflow", "prefect", "store")}
    bucket = f"citeops-stack-{tag}"
    boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1").create_bucket(Bucket=bucket)
    db_password = f"pw-{uuid.uuid4().hex}"  # trust auth: accepted and ignored by the server
    aws_secret = f"aws-{uuid.uuid4().hex}"
    admin_token = f"admin-{uuid.uuid4().hex}"
    home = tmp_path_factory.mktemp("stack") / "home"
    ports = {name: free_port() for name in ("prefect", "mlflow", "serve")}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CITEOPS_", "PREFECT_", "MLFLOW_"))
    }
    env.update(
        {
            "CITEOPS_PROFILE": "production",
            "CITEOPS_HOME": str(home),
            "CITEOPS_DATA_DIR": str(data_dir),
            "CITEOPS_MODEL__BASE_MODEL": "tiny",
            "CITEOPS_MODEL__MAX_LENGTH": "128",
            "CITEOPS_STORE_URL": f"postgresql+psycopg://{PG}/{dbs['store']}",
            "CITEOPS_LOG_ROOT": f"s3://{bucket}/logs",
            "CITEOPS_S3__ENDPOINT_URL": moto_s3,
            "CITEOPS_MLFLOW__SERVER_PORT": str(ports["mlflow"]),
            "CITEOPS_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
            "CITEOPS_MLFLOW__BACKEND_STORE_URI": (
                f"postgresql+psycopg://postgres:{db_password}@127.0.0.1:5432/{dbs['mlflow']}"
            ),
            "CITEOPS_MLFLOW__ARTIFACTS_DESTINATION": f"s3://{bucket}/artifacts",
            "CITEOPS_MLFLOW__SERVER_WORKERS": "1",
            "CITEOPS_STACK__PREFECT_PORT": str(ports["prefect"]),
            "CITEOPS_STACK__PREFECT_DATABASE_URL": (
                f"postgresql+asyncpg://postgres:{db_password}@127.0.0.1:5432/{dbs['prefect']}"
            ),
            "CITEOPS_STACK__WORKER_POLL_SECONDS": "1",
            "CITEOPS_STACK__HEALTH_TIMEOUT_SECONDS": "240",
            "CITEOPS_SERVE__PORT": str(ports["serve"]),
            "CITEOPS_SERVE__PRECISION": "fp32",
            "CITEOPS_ADMIN_TOKEN": admin_token,
            # the retrain deployment's run: small, and a gate that a tiny random model can
            # pass (the gate's rules are tested in test_gate.py)
            "CITEOPS_EVALUATE__MAX_EXAMPLES": "32",
            "CITEOPS_EVALUATE__LATENCY_SAMPLES": "5",
            "CITEOPS_GATE__MIN_IMPROVEMENT": "-1",
            "CITEOPS_GATE__MAX_F1_DROP": "1",
            "CITEOPS_GATE__MAX_LATENCY_INCREASE": "100",
            "CITEOPS_GATE__CLASS_F1_FLOOR": "0",
            "CITEOPS_GATE__BEHAVIOUR_MIN_PASS": "0",
            "CITEOPS_GATE__BASELINE_MARGIN": "-1",
            "CITEOPS_PROMOTE__BAKE_SECONDS": "2",
            "CITEOPS_PROMOTE__BAKE_POLL_SECONDS": "0.5",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": aws_secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "HF_HUB_OFFLINE": "1",
        }
    )
    stack = Stack(
        env=env,
        home=home,
        bucket=bucket,
        prefect_api=f"http://127.0.0.1:{ports['prefect']}/api",
        prefect_ui=f"http://127.0.0.1:{ports['prefect']}",
        mlflow_url=f"http://127.0.0.1:{ports['mlflow']}",
        serve_url=f"http://127.0.0.1:{ports['serve']}",
        secrets=(db_password, aws_secret, admin_token),
        databases=dbs,
        up_output="",
    )
    try:
        result = citeops(env, "up", "--no-serve")
        stack.up_output = result.stdout + result.stderr
        assert result.returncode == 0, stack.up_output
        yield stack
    finally:
        citeops(env, "down", timeout=120)
        for name in dbs.values():
            _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stack_settings(production_stack: Stack, citeops_env: Path, monkeypatch: pytest.MonkeyPatch):
    """This process's settings pointed at the running stack (what a team member's shell
    would export). Note: no MLFLOW_S3_ENDPOINT_URL here, so any artifact this process
    writes can only reach the bucket through the MLflow server's proxy."""
    from citeops.configs.settings import load_settings

    for key, value in production_stack.env.items():
        if key.startswith("CITEOPS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    return load_settings()


@pytest.fixture(scope="module")
def champion(production_stack: Stack) -> dict[str, str]:
    """The tiny model logged and registered through the MLflow server, alias `champion`."""
    import tempfile

    from citeops.configs.settings import load_settings
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.classifier.artifact import save_hf_folder
    from citeops.tasks.classifier.base import build_tiny
    from citeops.tasks.data.multivers import LABELS
    from citeops.tasks.registry.register import register_folder, set_alias

    with pytest.MonkeyPatch.context() as env:
        for key, value in production_stack.env.items():
            if key.startswith("CITEOPS_"):
                env.setenv(key, value)
        settings = use_mlflow(load_settings())  # the test is the entry point
        model, tokenizer = build_tiny(settings.model, seed=0)
        meta = {"labels": list(LABELS), "max_length": 128, "base_model": "tiny"}
        with tempfile.TemporaryDirectory(prefix="citeops-tiny-") as tmp:
            folder = save_hf_folder(model, tokenizer, Path(tmp) / "hf_model", meta)
            registered = register_folder(
                settings, folder, run_name="stack-test", params={"base_model": "tiny"}
            )
        set_alias(settings, registered.version, "champion")
    return {"version": registered.version, "run_id": registered.run_id}


def test_up_starts_every_server_and_reports_urls(production_stack: Stack) -> None:
    out = production_stack.up_output
    assert production_stack.prefect_ui in out and production_stack.mlflow_url in out
    status = citeops(production_stack.env, "status", "--json")
    assert status.returncode == 0, status.stderr
    services = {s["name"]: s for s in json.loads(status.stdout)["services"]}
    for name in ("prefect-server", "mlflow-server", "prefect-worker"):
        assert services[name]["state"] == "running", services[name]
    assert services["serving"]["state"] == "not running"  # --no-serve
    assert httpx.get(production_stack.prefect_api + "/health").json() is True
    assert httpx.get(production_stack.mlflow_url + "/health").text.strip() == "OK"
    config = json.loads(status.stdout)["config"]
    assert config["profile"] == "production"
    assert config["mlflow_backend_store"].startswith("postgresql+psycopg://postgres:***@")


def test_prefect_and_mlflow_store_in_postgresql(production_stack: Stack) -> None:
    import psycopg

    dbs = production_stack.databases
    with psycopg.connect(f"postgresql://{PG}/{dbs['prefect']}") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM deployment")}
        pools = {r[0] for r in conn.execute("SELECT name FROM work_pool")}
    assert {"stack-check", "quarterly"} <= names
    assert {"local", "gpu"} <= pools  # the production pools: process + GPU training
    with psycopg.connect(f"postgresql://{PG}/{dbs['mlflow']}") as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version  # `mlflow db upgrade` ran against the fresh database
    with psycopg.connect(f"postgresql://{PG}/{dbs['store']}") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)  # `up` created the store database


def test_registry_aliases_and_artifacts_in_s3(
    production_stack: Stack, champion: dict[str, str], stack_settings
) -> None:
    import boto3

    from citeops.tasks.registry.register import get_version_by_alias, set_alias

    assert get_version_by_alias(stack_settings, "champion") == champion["version"]
    set_alias(stack_settings, champion["version"], "challenger")
    assert get_version_by_alias(stack_settings, "challenger") == champion["version"]
    s3 = boto3.client("s3", endpoint_url=stack_settings.s3.endpoint_url, region_name="us-east-1")
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=production_stack.bucket, Prefix="artifacts/"
        )
        for obj in page.get("Contents", [])
    ]
    assert any(k.endswith("config.json") for k in keys), keys[:20]
    assert any(k.endswith("MLmodel") for k in keys), keys[:20]
    assert not Path(production_stack.home, "mlartifacts").exists()


def test_serving_starts_on_the_champion_and_second_up_is_harmless(
    production_stack: Stack, champion: dict[str, str]
) -> None:
    before = json.loads(citeops(production_stack.env, "status", "--json").stdout)["services"]
    result = citeops(production_stack.env, "up", "--no-deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    after = json.loads(citeops(production_stack.env, "status", "--json").stdout)["services"]
    pids_before = {s["name"]: s["pid"] for s in before if s["state"] == "running"}
    pids_after = {s["name"]: s["pid"] for s in after if s["state"] == "running"}
    assert pids_before.items() <= pids_after.items()  # nothing restarted
    assert "already running" in result.stdout
    assert "serving" in pids_after
    assert httpx.get(production_stack.serve_url + "/health").status_code == 200


def _wait_for_final_state(api: str, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = httpx.get(f"{api}/flow_runs/{run_id}").json()["state"]
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state
        assert time.monotonic() < deadline, f"flow run still {state['type']}"
        time.sleep(1)


def test_deployment_run_through_the_rest_api_like_the_ui(production_stack: Stack) -> None:
    api = production_stack.prefect_api
    deployment = httpx.get(f"{api}/deployments/name/stack-check/stack-check").json()
    assert deployment["work_pool_name"] == "local"
    body = {  # what the UI's "Quick run" posts
        "state": {"type": "SCHEDULED", "message": "Run from the Prefect UI with defaults"},
        "parameters": {},
    }
    run = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json=body)
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    state = _wait_for_final_state(api, run_id, timeout=150)
    assert state["type"] == "COMPLETED", state
    found = httpx.post(
        f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    ).json()
    report = next(a for a in found if a["key"] == "stack-check")
    assert report["type"] == "markdown"
    assert f"s3://{production_stack.bucket}/logs/stack-check/" in report["data"]
    assert "mlflow-artifacts:/" in report["data"]
    # the run's probe went through the MLflow proxy into the bucket
    import boto3

    s3 = boto3.client("s3", endpoint_url=production_stack.env["CITEOPS_S3__ENDPOINT_URL"])
    listed = s3.list_objects_v2(Bucket=production_stack.bucket, Prefix="artifacts/")
    assert any(o["Key"].endswith("stack-check/probe.json") for o in listed.get("Contents", []))


def _run_deployment(api: str, name: str, parameters: dict, timeout: float) -> dict:
    """Start a deployment's run as the UI does (create_flow_run) and wait for its end."""
    deployment = httpx.get(f"{api}/deployments/name/{name}").json()
    body = {"state": {"type": "SCHEDULED"}, "parameters": parameters}
    run = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json=body)
    assert run.status_code == 201, run.text
    return _wait_for_final_state(api, run.json()["id"], timeout=timeout)


def test_retrain_and_rollback_deployments_promote_and_restore_the_endpoint(
    production_stack: Stack, champion: dict[str, str], tmp_path: Path
) -> None:
    """retrain/on-demand (forced) trains, gates and promotes blue-green to the running
    endpoint; rollback/manual puts the champion back: both started through the REST API."""
    from mlflow import MlflowClient

    up = citeops(production_stack.env, "up", "--no-deploy")  # serving (idempotent)
    assert up.returncode == 0, up.stdout + up.stderr
    api, serve = production_stack.prefect_api, production_stack.serve_url
    client = MlflowClient(
        tracking_uri=production_stack.mlflow_url, registry_uri=production_stack.mlflow_url
    )
    before = client.get_model_version_by_alias("claim-verifier", "champion").version
    assert httpx.get(f"{serve}/version").json()["live"]["model_version"] == before
    train = {"max_examples": 16, "max_steps": 2, "max_length": 64, "epochs": 1}
    with gpu_worker(production_stack, tmp_path):  # retraining runs on the training pool
        state = _run_deployment(api, "retrain/on-demand", {"force": True, "train": train}, 400)
        assert state["type"] == "COMPLETED", state
    after = client.get_model_version_by_alias("claim-verifier", "champion").version
    assert int(after) > int(before)
    assert httpx.get(f"{serve}/version").json()["live"]["model_version"] == after
    assert client.get_model_version_by_alias("claim-verifier", "previous").version == before

    state = _run_deployment(api, "rollback/manual", {}, 150)
    assert state["type"] == "COMPLETED", state
    assert httpx.get(f"{serve}/version").json()["live"]["model_version"] == before
    assert client.get_model_version_by_alias("claim-verifier", "champion").version == before
    history = citeops(production_stack.env, "history", "--json")
    records = json.loads(history.stdout)["promotions"]
    assert [r["outcome"] for r in records[:2]] == ["rollback", "promoted"], records[:2]
    assert records[1]["flow_run_id"] and records[1]["trigger"]["causes"] == ["forced"]


def _chromium(args: list[str], profile: Path, timeout: float = 90) -> str:
    result = subprocess.run(
        [CHROMIUM, *UI_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.stdout


@pytest.mark.usefixtures("chromium")  # skips, named in the summary, without Chromium
def test_both_uis_in_headless_chromium(
    production_stack: Stack, champion: dict[str, str], tmp_path: Path
) -> None:
    views = {
        "prefect": (f"{production_stack.prefect_ui}/deployments", ["stack-check", "quarterly"]),
        "mlflow": (f"{production_stack.mlflow_url}/#/models/claim-verifier", ["champion"]),
    }
    for name, (url, expected) in views.items():
        budget = ["--virtual-time-budget=20000", "--window-size=1400,900"]
        dom = _chromium([*budget, "--dump-dom", url], tmp_path / f"{name}-dom")
        for text in expected:
            assert text in dom, f"{name} UI at {url} does not show {text!r}"
        shot = tmp_path / f"{name}.png"
        _chromium([*budget, f"--screenshot={shot}", url], tmp_path / f"{name}-shot")
        assert shot.is_file() and shot.stat().st_size > 10_000


@contextmanager
def gpu_worker(stack: Stack, tmp_path: Path) -> Iterator[None]:
    """The README's GPU-machine worker (`prefect worker start --pool gpu`), on this CPU."""
    from citeops.tasks.stack.processes import start_process, stop_process
    from citeops.tasks.stack.services import project_dir

    env = dict(stack.env)
    env.update(
        {
            "PREFECT_API_URL": stack.prefect_api,
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "CITEOPS_TRAIN__ACCELERATOR": "cpu",
            "CITEOPS_TRAIN__PRECISION": "32",
            "CITEOPS_TRAIN__BATCH_SIZE": "8",
            "CITEOPS_TRAIN__MAX_EVAL_EXAMPLES": "16",
        }
    )
    prefect = str(Path(sys.executable).with_name("prefect"))
    argv = [prefect, "worker", "start", "--pool", "gpu", "--type", "process", "--name", "gpu-box"]
    worker = start_process("gpu-worker", argv, env, project_dir(), tmp_path, stop_signal="SIGINT")
    try:
        yield
    except AssertionError as error:
        log = Path(worker.log).read_text()[-3000:]
        raise AssertionError(f"{error}\nworker log:\n{log}") from None
    finally:
        stop_process(worker, timeout=20)


@pytest.mark.slow
def test_training_deployment_on_the_gpu_pool(
    production_stack: Stack, champion: dict[str, str], tmp_path: Path
) -> None:
    """A worker on the GPU pool runs the quarterly retrain deployment; a new version lands
    in the registry, its files in S3."""
    from mlflow import MlflowClient

    api = production_stack.prefect_api
    with gpu_worker(production_stack, tmp_path):
        deployment = httpx.get(f"{api}/deployments/name/retrain/quarterly").json()
        assert deployment["work_pool_name"] == "gpu"
        params = {"train": {"max_examples": 16, "max_steps": 2, "max_length": 64, "epochs": 1}}
        state = _run_deployment(api, "retrain/quarterly", params, 400)
        assert state["type"] == "COMPLETED", state
    client = MlflowClient(
        tracking_uri=production_stack.mlflow_url, registry_uri=production_stack.mlflow_url
    )
    versions = client.search_model_versions("name='claim-verifier'")
    assert max(int(v.version) for v in versions) > int(champion["version"])
    newest = max(versions, key=lambda v: int(v.version))
    assert client.get_run(newest.run_id).data.metrics  # the training run logged metrics
    import boto3

    s3 = boto3.client("s3", endpoint_url=production_stack.env["CITEOPS_S3__ENDPOINT_URL"])
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=production_stack.bucket, Prefix="artifacts/"
        )
        for o in page.get("Contents", [])
    ]
    assert sum(k.endswith("config.json") for k in keys) >= 2  # both models' files in S3


def test_no_secret_in_mlflow_params(production_stack: Stack, champion: dict[str, str]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=production_stack.mlflow_url, registry_uri=production_stack.mlflow_url
    )
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments])
    assert runs
    for run in runs:
        for value in run.data.params.values():
            assert not any(secret in value for secret in production_stack.secrets)


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting to be reaped by init counts as exited)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_down_stops_exactly_what_up_started(production_stack: Stack) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = json.loads(citeops(production_stack.env, "status", "--json").stdout)
        pids = [s["pid"] for s in status["services"] if s["state"] == "running"]
        assert len(pids) == 4
        result = citeops(production_stack.env, "down")
        print(result.stdout)  # stop times per service
        assert result.returncode == 0, result.stderr
        assert all(_gone(pid) for pid in pids)
        assert bystander.poll() is None  # not ours: untouched
        for url in (
            production_stack.prefect_api + "/health",
            production_stack.mlflow_url + "/health",
        ):
            with pytest.raises(httpx.HTTPError):
                httpx.get(url, timeout=2)
        again = citeops(production_stack.env, "status", "--json")
        states = {s["state"] for s in json.loads(again.stdout)["services"]}
        assert states == {"not running"}
    finally:
        bystander.kill()
        bystander.wait()


def test_no_secret_in_any_file_the_stack_wrote(production_stack: Stack) -> None:
    written = [p for p in production_stack.home.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow-server.log" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in production_stack.secrets:
            assert secret.encode() not in data, f"a secret leaked into {path}"


def test_up_names_a_missing_bucket(production_stack: Stack) -> None:
    env = dict(production_stack.env)
    env["CITEOPS_HOME"] = str(production_stack.home.parent / "other-home")
    env["CITEOPS_MLFLOW__ARTIFACTS_DESTINATION"] = "s3://no-such-bucket-citeops/artifacts"
    env["CITEOPS_MLFLOW__SERVER_PORT"] = str(free_port())
    result = citeops(env, "up", "--only", "mlflow-server")
    assert result.returncode == 2
    assert "no-such-bucket-citeops" in result.stderr and "does not exist" in result.stderr


@pytest.mark.slow
def test_local_profile_stack_runs_a_deployment(tmp_path: Path, data_dir: Path) -> None:
    """The embedded default (`make up`): SQLite stores and local folders, no set-up."""
    ports = {name: free_port() for name in ("prefect", "mlflow", "serve")}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CITEOPS_", "PREFECT_", "MLFLOW_"))
    }
    env.update(
        {
            "CITEOPS_PROFILE": "local",
            "CITEOPS_HOME": str(tmp_path / "home"),
            "CITEOPS_DATA_DIR": str(data_dir),
            "CITEOPS_STACK__PREFECT_PORT": str(ports["prefect"]),
            "CITEOPS_MLFLOW__SERVER_PORT": str(ports["mlflow"]),
            "CITEOPS_SERVE__PORT": str(ports["serve"]),
            "CITEOPS_STACK__WORKER_POLL_SECONDS": "1",
        }
    )
    api = f"http://127.0.0.1:{ports['prefect']}/api"
    try:
        up = citeops(env, "up", "--no-serve")
        assert up.returncode == 0, up.stdout + up.stderr
        assert (tmp_path / "home" / "prefect" / "prefect.db").is_file()
        deployment = httpx.get(f"{api}/deployments/name/stack-check/stack-check").json()
        run = httpx.post(
            f"{api}/deployments/{deployment['id']}/create_flow_run",
            json={"state": {"type": "SCHEDULED"}, "parameters": {}},
        )
        state = _wait_for_final_state(api, run.json()["id"], timeout=150)
        assert state["type"] == "COMPLETED", state
        assert list((tmp_path / "home" / "logs" / "stack-check").glob("*.json"))
        assert list((tmp_path / "home").glob("mlartifacts-stack-check/*/artifacts/stack-check"))
    finally:
        down = citeops(env, "down")
    assert down.returncode == 0 and down.stdout.count("stopped in") == 3, down.stdout
