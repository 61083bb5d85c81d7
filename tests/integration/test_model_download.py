"""A model loaded from MLflow leaves no download behind (a serving process deploys many)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.inference.loading import load_verifier
from tests.integration.serve_support import save_tiny_model

pytestmark = pytest.mark.integration


def test_loading_from_mlflow_twice_leaves_no_temporary_folder(
    citeops_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    settings = load_settings()
    folder = save_tiny_model(tmp_path / "model")
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "model")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    for _ in range(2):
        verifier = load_verifier(f"runs:/{run.info.run_id}/model", settings)
        assert verifier.labels == ("SUPPORT", "NEI", "REFUTE")
        assert verifier.predict_proba(["a claim"], ["some evidence"]).shape == (1, 3)
    assert list(scratch.iterdir()) == []
