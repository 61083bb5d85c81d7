"""The HTTP surface as routers: one per tag, the admin router guarded by its dependency,
the admin token read once at start-up (not on every request), and the parts reached
through ``app.state``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citeops.configs.settings import Settings, load_settings
from citeops.serving.app import create_app
from citeops.serving.state import ServingState
from tests.code.test_serve_bluegreen import FakeVerifier

ADMIN = "admin-token-for-tests"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(profile="test", home=tmp_path, admin_token=ADMIN)
    app = create_app(settings, "model-a", loader=lambda uri: FakeVerifier(uri))
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        yield client


def test_each_route_belongs_to_the_router_of_its_tag(started: TestClient) -> None:
    paths = started.get("/openapi.json").json()["paths"]
    tags = {path: next(iter(ops.values()))["tags"] for path, ops in paths.items()}
    assert tags == {
        "/predict": ["predict"],
        "/predict/batch": ["predict"],
        "/feedback": ["feedback"],
        "/health": ["status"],
        "/ready": ["status"],
        "/version": ["status"],
        "/metrics": ["status"],
        "/admin/deploy": ["admin"],
        "/admin/rollback": ["admin"],
        "/admin/ab/start": ["admin"],
        "/admin/ab": ["admin"],
        "/admin/ab/stop": ["admin"],
    }


def test_admin_token_is_read_once_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = Settings.admin_secret

    def counting(self: Settings) -> str | None:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(Settings, "admin_secret", counting)
    settings = load_settings(profile="local", home=tmp_path)  # the token file is made once
    app = create_app(settings, "model-a", loader=lambda uri: FakeVerifier(uri))
    state: ServingState = app.state.serving
    assert state.admin_token == (tmp_path / "state" / "admin-token").read_text().strip()
    with TestClient(app) as client:
        header = {"Authorization": f"Bearer {state.admin_token}"}
        for _ in range(3):
            assert client.post("/admin/rollback", headers=header).status_code in (409, 200)
            assert client.post("/admin/rollback").status_code == 401
            client.get("/version", headers=header)
    assert len(calls) == 1


def test_admin_router_is_off_without_a_token(tmp_path: Path) -> None:
    settings = load_settings(profile="test", home=tmp_path)  # test profile: no token file
    app = create_app(settings, "model-a", loader=lambda uri: FakeVerifier(uri))
    with TestClient(app) as client:
        answer: Any = client.post("/admin/deploy", json={"model_uri": "model-b"})
        assert answer.status_code == 403
        assert "admin routes are disabled" in answer.json()["detail"]
    assert app.state.serving.admin_token is None
