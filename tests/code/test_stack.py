"""The stack's plain functions: PID files, process groups, ports, service specs, secrets
kept out of command lines, prefect.yaml and the mlflow/ start script (no servers here;
tests/integration/test_stack.py runs the real ones)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from citeops.configs.settings import load_settings
from citeops.tasks.redact import redact_url
from citeops.tasks.stack import processes
from citeops.tasks.stack.errors import PortTakenError, ServiceStartError, StackError
from citeops.tasks.stack.health import wait_healthy
from citeops.tasks.stack.processes import (
    ProcessRecord,
    is_alive,
    read_record,
    start_process,
    stop_process,
    write_record,
)
from citeops.tasks.stack.resources import is_postgres_url
from citeops.tasks.stack.services import mlflow_server_spec, prefect_server_spec, project_dir
from citeops.tasks.stack.stack import (
    select_services,
    stack_config,
    stack_down,
    stack_status,
    stack_up,
)

ROOT = project_dir()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_redact_url_masks_only_the_password() -> None:
    assert (
        redact_url("postgresql+psycopg://u:s3cr%40t@db:5432/mlflow")
        == "postgresql+psycopg://u:***@db:5432/mlflow"
    )
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_url("see postgresql+asyncpg://a:b@h/p and more") == (
        "see postgresql+asyncpg://a:***@h/p and more"
    )
    assert redact_url(None) is None
    assert is_postgres_url("postgresql+asyncpg://h/p") and not is_postgres_url("sqlite:///x")


def test_select_services_in_start_order() -> None:
    settings = load_settings()
    assert select_services(settings) == [
        "prefect-server",
        "mlflow-server",
        "serving",
        "prefect-worker",
    ]
    assert select_services(settings, ["prefect-worker", "mlflow-server"]) == [
        "mlflow-server",
        "prefect-worker",
    ]
    assert "serving" not in select_services(load_settings(stack={"serve": False}))
    with pytest.raises(StackError, match="unknown service 'nope'"):
        select_services(settings, ["nope"])


def test_stop_process_ends_the_whole_group(tmp_path: Path) -> None:
    script = "sleep 60 & echo child $!; wait"
    record = start_process(
        "group", ["sh", "-c", script], {"PATH": "/usr/bin:/bin"}, tmp_path, tmp_path
    )
    assert read_record(tmp_path, "group") == record
    deadline = time.monotonic() + 10
    while "child" not in Path(record.log).read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(re.search(r"child (\d+)", Path(record.log).read_text()).group(1))
    assert is_alive(record) and not _gone(child)
    assert stop_process(record, timeout=5) is True
    assert _gone(record.pid) and _gone(child)
    assert stop_process(record, timeout=5) is False  # already stopped


def test_sigint_stop_signal_goes_to_the_leader_first(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    record = start_process(
        "ctrl-c", [sys.executable, "-c", code], {}, tmp_path, tmp_path, stop_signal="SIGINT"
    )
    assert read_record(tmp_path, "ctrl-c").stop_signal == "SIGINT"
    deadline = time.monotonic() + 20
    while "ready" not in Path(record.log).read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert stop_process(record, timeout=20) is True
    assert time.monotonic() - started < 5  # SIGINT worked; no SIGTERM/SIGKILL wait
    assert _gone(record.pid)


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    record = start_process(
        "sleeper", ["sleep", "30"], {"PATH": "/usr/bin:/bin"}, tmp_path, tmp_path
    )
    try:
        impostor = ProcessRecord("sleeper", record.pid, record.create_time - 100, record.log)
        assert is_alive(record) and not is_alive(impostor)
        assert stop_process(impostor, timeout=1) is False
        assert is_alive(record)  # the real process was not touched
    finally:
        stop_process(record, timeout=5)


def test_down_stops_only_recorded_processes_and_clears_stale_files(tmp_path: Path) -> None:
    settings = load_settings()
    state = settings.state_dir
    state.mkdir(parents=True)
    ours = start_process(
        "mlflow-server", ["sleep", "30"], {"PATH": "/usr/bin:/bin"}, tmp_path, state
    )
    bystander = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_record(state, ProcessRecord("prefect-worker", dead.pid, 1.0, str(tmp_path / "w.log")))
    try:
        status = {s.name: s for s in stack_status(settings)}
        assert status["prefect-worker"].state == "not running"
        assert "stale" in status["prefect-worker"].note
        assert status["prefect-server"].state == "not running"
        down = {s.name: s for s in stack_down(settings)}
        assert down["mlflow-server"].state == "stopped" and _gone(ours.pid)
        assert down["prefect-worker"].state == "not running"
        assert bystander.poll() is None
        assert not list(state.glob("*.pid.json"))
    finally:
        bystander.kill()
        bystander.wait()


def test_a_taken_port_is_named_and_nothing_starts() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = load_settings(stack={"prefect_port": port})
        with pytest.raises(PortTakenError) as raised:
            stack_up(settings, ["prefect-server"])
    message = str(raised.value)
    assert f"port {port} on 127.0.0.1" in message
    assert "CITEOPS_STACK__PREFECT_PORT" in message and "nothing was started" in message
    assert f"pid {psutil.Process().pid}" in message  # the owner is named
    assert not list(settings.state_dir.glob("*.pid.json"))


def test_wait_healthy_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    argv = ["sh", "-c", "echo 'boom: postgresql://u:hunter2@db/x'; exit 3"]
    record = start_process("bad", argv, {"PATH": "/usr/bin:/bin"}, tmp_path, tmp_path)
    with pytest.raises(ServiceStartError) as raised:
        wait_healthy("bad server", lambda: False, record, timeout=20, interval=0.05)
    message = str(raised.value)
    assert "bad server exited while starting" in message and record.log in message
    assert "boom: postgresql://u:***@db/x" in message and "hunter2" not in message


def test_wait_healthy_times_out() -> None:
    with pytest.raises(ServiceStartError, match="did not answer within 0 s"):
        wait_healthy("slow", lambda: False, None, timeout=0.2, interval=0.05)


def test_secrets_reach_servers_only_through_the_environment(monkeypatch) -> None:
    secret = "pw-do-not-print"
    monkeypatch.setenv(
        "CITEOPS_MLFLOW__BACKEND_STORE_URI", f"postgresql+psycopg://u:{secret}@db:5432/mlflow"
    )
    monkeypatch.setenv(
        "CITEOPS_STACK__PREFECT_DATABASE_URL", f"postgresql+asyncpg://u:{secret}@db:5432/prefect"
    )
    monkeypatch.setenv("CITEOPS_S3__ENDPOINT_URL", "http://127.0.0.1:9")
    settings = load_settings()
    mlflow_spec, prefect_spec = mlflow_server_spec(settings), prefect_server_spec(settings)
    for spec in (mlflow_spec, prefect_spec):
        assert not any(secret in arg for arg in spec.argv)
    assert secret in mlflow_spec.env["MLFLOW_BACKEND_STORE_URI"]
    assert mlflow_spec.env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert secret in prefect_spec.env["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_spec.env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert prefect_spec.env["PREFECT_HOME"].startswith(str(settings.home))
    shown = repr(stack_config(settings)) + repr(mlflow_spec) + repr(prefect_spec)
    assert secret not in shown


def test_production_profile_has_servers_and_no_secrets() -> None:
    text = (ROOT / "configs" / "profiles" / "production.yaml").read_text()
    assert not re.search(r"://[^/\s:@]+:[^@/\s]+@", text), "a password in production.yaml"
    settings = load_settings(profile="production")
    assert settings.mlflow.backend_store_uri.startswith("postgresql+psycopg://")
    assert settings.mlflow.artifacts_destination.startswith("s3://")
    assert settings.mlflow.artifact_location.startswith("mlflow-artifacts:/")
    assert settings.mlflow.tracking_uri.startswith("http://")
    assert settings.stack.prefect_database_url.startswith("postgresql+asyncpg://")
    assert settings.store_url.startswith("postgresql+psycopg://")
    assert settings.is_s3_log_root
    assert (settings.stack.work_pool, settings.stack.train_work_pool) == ("local", "gpu")


def test_prefect_yaml_entrypoints_exist_and_placeholders_are_filled() -> None:
    from citeops.tasks.stack.deploy import deploy_env

    text = (ROOT / "prefect.yaml").read_text()
    config = yaml.safe_load(text)
    pairs = [(d["entrypoint"], d["name"]) for d in config["deployments"]]
    assert len(pairs) == len(set(pairs))  # a deployment name is unique within its flow
    assert {
        ("flows/stack_check.py:stack_check", "stack-check"),
        ("flows/monitor.py:monitor", "daily"),
        ("flows/retrain.py:retrain", "quarterly"),
        ("flows/retrain.py:retrain", "on-demand"),
        ("flows/promote.py:promote", "manual"),
        ("flows/rollback.py:rollback", "manual"),
    } <= set(pairs)
    for deployment in config["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        assert re.search(rf"^def {function}\(", (ROOT / path).read_text(), re.M), path
        assert deployment["work_pool"]["name"].startswith("{{ $CITEOPS_DEPLOY_")
    env = deploy_env(load_settings())
    for name in re.findall(r"\{\{ \$(\w+) \}\}", text):
        assert env.get(name), f"prefect.yaml uses ${name}, which `citeops deploy` does not set"


def _fake_mlflow(tmp_path: Path) -> Path:
    fake = tmp_path / "mlflow"
    fake.write_text('#!/bin/sh\necho "$@ jobs=$MLFLOW_SERVER_ENABLE_JOB_EXECUTION" >> "$CALLS"\n')
    fake.chmod(0o755)
    return fake


def test_mlflow_start_script_upgrades_the_schema_then_serves(tmp_path: Path) -> None:
    script = ROOT / "mlflow" / "start-server.sh"
    assert not (ROOT / "mlflow" / "__init__.py").exists()  # would shadow the library
    calls = tmp_path / "calls"
    env = {
        "PATH": "/usr/bin:/bin",
        "CALLS": str(calls),
        "MLFLOW_BIN": str(_fake_mlflow(tmp_path)),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "MLFLOW_ARTIFACTS_DESTINATION": (tmp_path / "artifacts").as_uri(),
        "MLFLOW_SERVER_PORT": "5999",
    }
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    upgrade, serve = calls.read_text().splitlines()
    assert upgrade == f"db upgrade sqlite:///{tmp_path}/mlflow.db jobs=false"
    assert serve.startswith("server --host 127.0.0.1 --port 5999")
    assert "--serve-artifacts" in serve and "mlflow-artifacts:/" in serve
    assert serve.endswith("jobs=false")  # no MLflow job runner (seven extra processes)
    assert (tmp_path / "artifacts").is_dir()

    calls.unlink()
    subprocess.run(["bash", str(script)], env={**env, "MLFLOW_DB_UPGRADE": "0"}, check=True)
    assert calls.read_text().startswith("server ")

    del env["MLFLOW_BACKEND_STORE_URI"]
    missing = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "MLFLOW_BACKEND_STORE_URI" in missing.stderr


def test_probe_log_root_writes_and_reads_back() -> None:
    from citeops.tasks.stack.checks import probe_log_root, stack_check_markdown

    settings = load_settings()
    result = probe_log_root(settings)
    assert Path(result["uri"]).is_file() and result["uri"].startswith(settings.log_root)
    markdown = stack_check_markdown({"run_id": "r1", "artifact_uri": "a:/b"}, result)
    assert "`r1`" in markdown and result["uri"] in markdown


def test_cli_status_and_down_on_an_empty_state() -> None:
    from citeops.flows.cli import main

    with pytest.raises(SystemExit) as done:
        main(["status", "--json"])
    assert done.value.code == 0
    with pytest.raises(SystemExit) as done:
        main(["down"])
    assert done.value.code == 0


def test_processes_module_has_no_import_time_work() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import citeops.tasks.stack.stack"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert "mlflow" not in out and "prefect" not in out
    assert processes.START_TIME_TOLERANCE_S > 0


def test_one_up_or_down_at_a_time() -> None:
    from citeops.tasks.stack.stack import stack_lock

    settings = load_settings()
    with stack_lock(settings.state_dir):
        with pytest.raises(StackError, match="another `citeops up` or `citeops down` is running"):
            stack_down(settings)
    assert {s.state for s in stack_down(settings)} == {"not running"}  # released


def test_deploy_without_a_prefect_server_says_what_to_do() -> None:
    from citeops.tasks.stack.deploy import deploy_flows
    from tests.conftest import free_port

    settings = load_settings(stack={"prefect_port": free_port()})
    with pytest.raises(StackError, match="does not answer.*citeops up --only prefect-server"):
        deploy_flows(settings)
