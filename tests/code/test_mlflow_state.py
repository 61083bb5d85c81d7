"""MLflow without process-wide state: the serving app deploys from two stores in one
process and leaves MLflow's tracking and registry URIs as it found them; no module of the
product sets them (only entry points do, through ``citeops.flows.tracking``)."""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path

import httpx
import pytest

from citeops.configs.settings import Settings, load_settings
from tests.integration.serve_support import running_server

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GLOBAL_SETTERS = {"set_tracking_uri", "set_registry_uri"}


def store_settings(home: Path) -> Settings:
    return load_settings(
        profile="test", home=home, admin_token=TOKEN, serve={"precision": "fp32"}, ingest={}
    )


def register_tiny(settings: Settings, seed: int) -> str:
    """A tiny model registered twice in the settings' store (versions 1 and 2, the
    second with alias ``live-test``); registering is an entry point's job here."""
    from citeops.flows.tracking import use_mlflow
    from citeops.tasks.registry.register import register_folder
    from tests.integration.serve_support import save_tiny_model

    use_mlflow(settings)
    with tempfile.TemporaryDirectory(prefix="citeops-tiny-") as tmp:
        folder = save_tiny_model(Path(tmp) / "hf_model", seed=seed)
        register_folder(settings, folder, run_name="state-test")
        return register_folder(settings, folder, run_name="state-test", alias="live-test").version


def test_deploys_from_two_stores_leave_mlflow_global_uris_alone(tmp_path: Path) -> None:
    import mlflow
    from citeops.serving.app import create_app

    first, second = store_settings(tmp_path / "a"), store_settings(tmp_path / "b")
    assert first.mlflow.tracking_uri != second.mlflow.tracking_uri
    versions = {"a": register_tiny(first, seed=0), "b": register_tiny(second, seed=1)}
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    mlflow.set_tracking_uri(elsewhere)  # the process default names neither store
    mlflow.set_registry_uri(elsewhere)
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}

    for name, settings in (("a", first), ("b", second)):
        model = settings.mlflow.registered_model
        with running_server(create_app(settings, f"models:/{model}/1", ui=False)) as base:
            deployed = httpx.post(
                base + "/admin/deploy",
                json={"model_uri": f"models:/{model}@live-test"},
                headers=AUTH,
                timeout=120,
            )
            assert deployed.status_code == 200, deployed.text
            live = httpx.get(base + "/version").json()["live"]
        assert live["model_version"] == versions[name] == "2"
        assert mlflow.get_tracking_uri() == elsewhere
        assert mlflow.get_registry_uri() == elsewhere
        assert {k: os.environ.get(k) for k in env} == env


def test_a_fluent_run_without_the_entry_point_set_up_is_one_clear_error(tmp_path: Path) -> None:
    import mlflow
    from citeops.tasks.tracking import TrackingNotSet, require_fluent_tracking

    settings = store_settings(tmp_path / "a")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(TrackingNotSet, match="use_mlflow"):
        require_fluent_tracking(settings)


def global_uri_setters(path: Path) -> list[str]:
    """``file:line`` of each call of ``set_tracking_uri`` / ``set_registry_uri`` in
    ``path`` (``mlflow.set_tracking_uri(...)`` or the bare name after an import)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in GLOBAL_SETTERS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_product_module_sets_mlflow_process_uris() -> None:
    files = [p for folder in ("tasks", "serving") for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 50
    assert [hit for path in files for hit in global_uri_setters(path)] == []


def test_the_scan_finds_a_setter(tmp_path: Path) -> None:
    sample = ROOT / "flows" / "tracking.py"
    assert len(global_uri_setters(sample)) == 2
