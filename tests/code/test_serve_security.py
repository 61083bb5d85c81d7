"""Serving under attack, in process (a fake model, no torch): feedback credentials and
rate limit, bodies FastAPI cannot parse, odd tokens, and what the public routes show."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from citeops.configs.settings import Settings, SettingsError, load_settings
from citeops.serving.app import create_app
from citeops.serving.credentials import FeedbackAuth, RateLimiter, sign_feedback_token
from citeops.serving.public import public_model_uri, public_text
from tests.code.test_serve_bluegreen import FakeVerifier

ADMIN = "admin-token-for-tests"
KEY = "alice-key-0123456789"
SECRET = "s" * 40
FEEDBACK = {
    "claim": "Aspirin lowers the risk of colorectal cancer.",
    "evidence": "Daily aspirin use was associated with fewer colorectal cancers.",
    "user_label": "SUPPORT",
}


def settings_for(home: Path, **feedback: Any) -> Settings:
    return load_settings(
        profile="test",
        home=home,
        admin_token=ADMIN,
        serve={"log_part_max_seconds": 0.2},
        feedback=feedback,
    )


@pytest.fixture
def client_for(tmp_path: Path) -> Iterator[Any]:
    """``client_for(**feedback settings)``: a started app serving a fake model from a
    folder path (``<tmp>/models/model-a``), as a TestClient."""
    clients: list[TestClient] = []
    model_path = str(tmp_path / "models" / "model-a")

    def make(**feedback: Any) -> TestClient:
        settings = settings_for(tmp_path / f"home-{len(clients)}", **feedback)
        app = create_app(settings, model_path, loader=lambda uri: FakeVerifier("model-a"))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def feedback_lines(home: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((home / "logs" / "feedback").rglob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return rows


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def test_feedback_without_credentials_is_refused_when_they_are_required(client_for) -> None:  # noqa: ANN001
    client = client_for(require_credentials=True, api_keys=f"alice:{KEY}")
    missing = client.post("/feedback", json=FEEDBACK)
    assert missing.status_code == 401 and "credentials" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/feedback", json=FEEDBACK, headers=bearer("not-a-key-at-all-xx"))
    assert wrong.status_code == 401
    ok = client.post("/feedback", json=FEEDBACK, headers=bearer(KEY))
    assert ok.status_code == 202, ok.text


def test_feedback_line_records_the_authenticated_client(client_for, tmp_path: Path) -> None:  # noqa: ANN001
    client = client_for(api_keys=f"alice:{KEY}", token_secret=SECRET)  # not required here
    token = sign_feedback_token(SECRET, "user-42", time.time() + 600)
    assert client.post("/feedback", json=FEEDBACK, headers=bearer(KEY)).status_code == 202
    assert client.post("/feedback", json=FEEDBACK, headers=bearer(token)).status_code == 202
    assert client.post("/feedback", json=FEEDBACK).status_code == 202  # anonymous
    # a wrong credential is refused, never taken as anonymous
    assert client.post("/feedback", json=FEEDBACK, headers=bearer(KEY + "x")).status_code == 401
    client.__exit__(None, None, None)  # flush the log parts
    lines = feedback_lines(tmp_path / "home-0")
    assert sorted(line.get("client_id", "-") for line in lines) == ["-", "alice", "user-42"]


def test_signed_tokens_expire_and_cannot_be_forged() -> None:
    settings = load_settings(profile="test", feedback={"token_secret": SECRET})
    auth = FeedbackAuth.from_settings(settings.feedback)
    now = 1_800_000_000.0
    token = sign_feedback_token(SECRET, "user-7", now + 60)
    assert auth.client_of(f"Bearer {token}", now) == "user-7"
    forged = token.replace("user-7", "user-8")
    other_key = sign_feedback_token("x" * 40, "user-7", now + 60)
    from citeops.serving.credentials import Unauthorized

    for bad, why in [
        (forged, "signature"),
        (other_key, "signature"),
        (token, "expired"),
        (sign_feedback_token(SECRET, "user-7", now + 10**9), "too long"),
        ("v1.user-7.notanumber.sig", "malformed"),
    ]:
        at = now + 120 if why == "expired" else now
        with pytest.raises(Unauthorized, match=why):
            auth.client_of(f"Bearer {bad}", at)


def test_feedback_rate_limit_answers_429_with_retry_after(client_for) -> None:  # noqa: ANN001
    client = client_for(api_keys=f"alice:{KEY},bob:bob-key-0123456789", rate_burst=3)
    codes = [
        client.post("/feedback", json=FEEDBACK, headers=bearer(KEY)).status_code for _ in range(4)
    ]
    assert codes == [202, 202, 202, 429]
    limited = client.post("/feedback", json=FEEDBACK, headers=bearer(KEY))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    # the limit is per client: another client is not affected
    other = client.post("/feedback", json=FEEDBACK, headers=bearer("bob-key-0123456789"))
    assert other.status_code == 202


def test_rate_limiter_refills_and_bounds_its_memory() -> None:
    limiter = RateLimiter(per_minute=60, burst=2, max_keys=3)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.take("a", now=1.0) == 0.0  # one token a second
    for key in "bcde":
        limiter.take(key, now=2.0)
    assert len(limiter._buckets) == 3


def test_credentials_are_required_in_production_and_secrets_only_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(profile="production").feedback.require_credentials is True
    assert load_settings(profile="local").feedback.require_credentials is False
    with pytest.raises(SettingsError, match="feedback.*production"):
        load_settings(profile="production", feedback={"require_credentials": False})
    with pytest.raises(SettingsError, match="shorter than 16") as info:
        load_settings(feedback={"api_keys": "alice:short-key"})
    assert "short-key" not in str(info.value)  # never echo a secret
    profile = tmp_path / "test.yaml"
    profile.write_text("profile: test\nfeedback:\n  token_secret: written-in-a-file\n")
    monkeypatch.setattr("citeops.configs.settings.PROFILES_DIR", tmp_path)
    with pytest.raises(SettingsError, match="CITEOPS_FEEDBACK__TOKEN_SECRET"):
        load_settings(profile="test")


def test_required_credentials_without_any_configured_refuse_feedback(client_for) -> None:  # noqa: ANN001
    client = client_for(require_credentials=True)
    refused = client.post("/feedback", json=FEEDBACK, headers=bearer(KEY))
    assert refused.status_code == 403 and "CITEOPS_FEEDBACK__API_KEYS" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"claim": "caf\xe9", "evidence": "e"}', "not valid UTF-8"),
        (b'{"claim": ' * 5000 + b'"c"' + b"}" * 5000, "nested too deeply"),
    ],
    ids=["deep-array", "invalid-utf8", "deep-object"],
)
def test_unparsable_body_gets_400_naming_the_body(client_for, body: bytes, what: str) -> None:  # noqa: ANN001
    client = client_for()
    for route in ("/predict", "/feedback"):
        response = client.post(route, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["field"] == "body"
        assert response.json()["detail"].startswith("body: ") and what in response.json()["detail"]
    assert client.post("/predict", json=FEEDBACK).status_code in (200, 422)


def test_non_ascii_bearer_token_gets_401_not_500(client_for) -> None:  # noqa: ANN001
    client = client_for(api_keys=f"alice:{KEY}")
    header = [(b"authorization", "Bearer tökén-ü".encode())]
    assert client.post("/admin/rollback", headers=header).status_code == 401
    assert client.post("/feedback", json=FEEDBACK, headers=header).status_code == 401


def test_public_routes_show_no_filesystem_paths(client_for, tmp_path: Path) -> None:  # noqa: ANN001
    client = client_for()
    root = str(tmp_path)
    public = client.get("/version")
    assert public.json()["live"]["model_uri"] == ".../model-a"
    assert root not in public.text
    assert root not in client.get("/metrics").text
    assert 'model_uri=".../model-a"' in client.get("/metrics").text
    admin = client.get("/version", headers=bearer(ADMIN)).json()
    assert admin["live"]["model_uri"] == str(tmp_path / "models" / "model-a")


def test_public_text_cuts_paths_and_keeps_registry_uris() -> None:
    assert public_model_uri("models:/claim-verifier/3") == "models:/claim-verifier/3"
    assert public_model_uri("s3://bucket/deep/model") == ".../model"
    text = "ModelLoadError: /srv/models/run-1: no such model folder (file:///srv/x/y)"
    assert public_text(text) == "ModelLoadError: .../run-1: no such model folder (.../y)"
    assert public_text("models:/m@champion: cannot be resolved") == (
        "models:/m@champion: cannot be resolved"
    )
