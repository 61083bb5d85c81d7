"""The serving endpoint against a real uvicorn server on a free localhost port (tiny model)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeops.configs.settings import Settings, load_settings
from citeops.serving.app import create_app
from tests.integration.serve_support import running_server, save_tiny_model, strip_weights

pytestmark = pytest.mark.integration
TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAIR = {
    "claim": "Aspirin lowers the risk of colorectal cancer.",
    "evidence": "Daily aspirin use was associated with fewer colorectal cancers.",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny model folders (different seeds), one that raises, one without its
    classification head, one with a weight its architecture does not have."""
    root = tmp_path_factory.mktemp("models")
    return {
        "a": save_tiny_model(root / "model-a", seed=0),
        "b": save_tiny_model(root / "model-b", seed=1),
        "raises": save_tiny_model(root / "model-raises", vocab_size=50),
        "headless": strip_weights(save_tiny_model(root / "model-headless"), "classifier."),
        "extra": strip_weights(save_tiny_model(root / "model-extra"), "-", extra="extra.weight"),
    }


def make_settings(home: Path, ingest: dict[str, Any] | None = None, **serve: Any) -> Settings:
    return load_settings(
        profile="test",
        home=home,
        admin_token=TOKEN,
        serve={"log_part_max_seconds": 0.3, "precision": "fp32", **serve},
        ingest=ingest or {},
    )


def published_lines(root: Path, stream: str) -> list[dict[str, Any]]:
    """Lines of published parts only (what a reader of the log root sees)."""
    rows = []
    for path in sorted((root / stream).rglob("*.jsonl")):
        if not path.name.startswith("."):
            rows.extend(json.loads(line) for line in path.read_text().splitlines())
    return rows


def wait_until(check, timeout: float = 10.0) -> Any:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Settings]]:
    """One server for the round-trip and bad-input tests."""
    settings = make_settings(
        tmp_path_factory.mktemp("home"),
        ingest={"max_claim_chars": 100},  # below serve.max_text_chars: ingestion's limit wins
        max_text_chars=200,
        max_body_bytes=4000,
        max_batch_request=3,
    )
    with running_server(create_app(settings, str(models["a"]))) as base:
        yield base, settings


def test_predict_feedback_round_trip_and_logs_readable_while_running(server) -> None:  # noqa: ANN001
    base, settings = server
    answer = httpx.post(base + "/predict", json=PAIR).json()
    assert answer["label"] in ("SUPPORT", "NEI", "REFUTE")
    assert set(answer["probabilities"]) == {"SUPPORT", "NEI", "REFUTE"}
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4
    assert answer["label"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert answer["slot"] == "blue" and answer["model_version"] == "model-a"

    batch = httpx.post(
        base + "/predict/batch", json={"pairs": [PAIR, PAIR, {**PAIR, "claim": "x y"}]}
    )
    assert batch.status_code == 200
    predictions = batch.json()["predictions"]
    assert len(predictions) == 3 and len({p["request_id"] for p in predictions}) == 3
    for label, p in answer["probabilities"].items():  # batching and padding keep outputs
        assert predictions[0]["probabilities"][label] == pytest.approx(p, abs=1e-5)

    feedback = httpx.post(
        base + "/feedback",
        json={**PAIR, "request_id": answer["request_id"], "user_label": "refute"},
    )
    assert feedback.status_code == 202
    record_id = feedback.json()["id"]

    root = Path(settings.log_root)
    queries = wait_until(
        lambda: [
            r for r in published_lines(root, "queries") if r["request_id"] == answer["request_id"]
        ]
    )
    assert queries, "the query line is published while the server runs"
    line = queries[0]
    assert line["prediction"] == answer["label"] and line["slot"] == "blue"
    assert line["probabilities"] == answer["probabilities"] and line["latency_ms"] >= 0
    assert line["claim"] == PAIR["claim"] and line["evidence"] == PAIR["evidence"]
    assert line["datetime"][:10] in {p.name[5:] for p in (root / "queries").iterdir()}
    rows = wait_until(
        lambda: [r for r in published_lines(root, "feedback") if r["feedback_id"] == record_id]
    )
    assert rows and rows[0]["user_label"] == "REFUTE" and rows[0]["prediction"] == answer["label"]
    assert rows[0]["model_version"] == "model-a" and rows[0]["slot"] == "blue"
    assert rows[0]["model"] == answer_model_uri(base)


def answer_model_uri(base: str) -> str:
    """The live model's URI as the admin sees it (the public /version shows no paths)."""
    return httpx.get(base + "/version", headers=AUTH).json()["live"]["model_uri"]


def test_status_routes_and_metrics(server) -> None:  # noqa: ANN001
    base, _ = server
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    assert httpx.get(base + "/ready").json()["ready"] is True
    version = httpx.get(base + "/version").json()
    assert version["live"]["slot"] == "blue" and version["idle"]["loaded"] is False
    assert httpx.get(base + "/docs").status_code == 200
    httpx.post(base + "/predict", json=PAIR)
    text = httpx.get(base + "/metrics").text
    assert 'citeops_http_requests_total{route="/predict",status="200"}' in text
    assert "citeops_http_request_duration_seconds_bucket" in text
    assert "citeops_batch_size_count" in text and "citeops_queue_depth" in text
    assert "citeops_slot_model_info{model_uri=" in text and 'slot="blue"} 1.0' in text
    assert "process_resident_memory_bytes" in text and "process_cpu_seconds_total" in text


BAD_INPUTS = [
    ("/predict", {"claim": "", "evidence": "e"}, 422, "claim"),
    ("/predict", {"claim": "   \n", "evidence": "e"}, 422, "claim"),
    ("/predict", {"claim": "c", "evidence": "x" * 201}, 422, "evidence"),
    ("/predict", {"claim": 5, "evidence": "e"}, 422, "claim"),
    ("/predict", {"claim": "c"}, 422, "evidence"),
    ("/predict", ["c", "e"], 422, "body"),
    ("/predict", b"{not json", 400, "body"),
    ("/predict", b"x" * 5000, 413, "body"),
    ("/predict/batch", {"pairs": [PAIR] * 4}, 422, "pairs"),
    ("/predict/batch", {"pairs": []}, 422, "pairs"),
    (
        "/predict/batch",
        {"pairs": [PAIR, {"claim": "c", "evidence": " "}]},
        422,
        "pairs[1].evidence",
    ),
    ("/feedback", {**PAIR, "user_label": "MAYBE"}, 422, "user_label"),
    ("/feedback", {**PAIR, "user_label": "NEI", "prediction": "YES"}, 422, "prediction"),
    ("/feedback", {**PAIR, "user_label": 1}, 422, "user_label"),
    ("/feedback", {"claim": "", "evidence": "e", "user_label": "NEI"}, 422, "claim"),
    # text the log writer or PostgreSQL cannot store is refused before any acknowledgement
    ("/predict", {"claim": "a\u0000b", "evidence": "e"}, 422, "claim"),
    ("/predict", {"claim": "c", "evidence": "e\ud800"}, 422, "evidence"),
    (
        "/predict/batch",
        {"pairs": [PAIR, {"claim": "\udfff", "evidence": "e"}]},
        422,
        "pairs[1].claim",
    ),
    ("/feedback", {**PAIR, "evidence": "e\ud800", "user_label": "NEI"}, 422, "evidence"),
    ("/feedback", {**PAIR, "claim": "\u0000", "user_label": "NEI"}, 422, "claim"),
    ("/feedback", {**PAIR, "user_label": "NEI", "request_id": "r\u0000"}, 422, "request_id"),
    # ingestion's limits (ingest.max_claim_chars, 128-character request ids) hold at the API
    ("/predict", {"claim": "c" * 101, "evidence": "e"}, 422, "claim"),
    ("/feedback", {**PAIR, "claim": "c" * 101, "user_label": "NEI"}, 422, "claim"),
    ("/feedback", {**PAIR, "user_label": "NEI", "request_id": "r" * 129}, 422, "request_id"),
]


@pytest.mark.parametrize(("route", "body", "status", "field"), BAD_INPUTS)
def test_bad_input_gets_4xx_naming_the_field(server, route, body, status, field) -> None:  # noqa: ANN001
    base, _ = server
    # json.dumps escapes lone surrogates as \\udXXX, as a client in any language may send
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        base + route, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}:"), detail
    assert httpx.post(base + "/predict", json=PAIR).status_code == 200  # still serving


def test_oversized_chunked_body_is_refused(server) -> None:  # noqa: ANN001
    base, _ = server

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = httpx.post(
        base + "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_admin_needs_the_token_and_is_off_without_one(server, models, tmp_path: Path) -> None:  # noqa: ANN001
    base, _ = server
    assert httpx.post(base + "/admin/rollback").status_code == 401
    wrong = httpx.post(
        base + "/admin/deploy",
        json={"model_uri": str(models["b"])},
        headers={"Authorization": "Bearer nope"},
    )
    assert wrong.status_code == 401 and "token" in wrong.json()["detail"]
    assert httpx.get(base + "/version").json()["live"]["model_version"] == "model-a"

    settings = load_settings(profile="test", home=tmp_path / "home")
    assert settings.admin_token is None
    with running_server(create_app(settings, str(models["a"]))) as other:
        off = httpx.post(other + "/admin/rollback", headers=AUTH)
        assert off.status_code == 403 and "disabled" in off.json()["detail"]


def test_swap_and_rollback_under_load_fail_no_request(models, tmp_path: Path) -> None:  # noqa: ANN001
    settings = make_settings(tmp_path / "home")
    expected = {("blue", "model-a"), ("green", "model-b")}
    seen: set[tuple[str, str]] = set()
    failures: list[str] = []
    stop = threading.Event()
    with running_server(create_app(settings, str(models["a"]))) as base:

        def client() -> int:
            count = 0
            with httpx.Client(base_url=base, timeout=30) as http:
                while not stop.is_set():
                    response = http.post("/predict", json=PAIR)
                    count += 1
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    body = response.json()
                    seen.add((body["slot"], body["model_version"]))
            return count

        with ThreadPoolExecutor(6) as pool:
            counts = [pool.submit(client) for _ in range(6)]
            swaps = []
            for i in range(6):
                if i % 2 == 0:
                    swaps.append(
                        httpx.post(
                            base + "/admin/deploy",
                            json={"model_uri": str(models["b"])},
                            headers=AUTH,
                            timeout=60,
                        )
                    )
                else:
                    swaps.append(httpx.post(base + "/admin/rollback", headers=AUTH, timeout=60))
                time.sleep(0.2)
            stop.set()
            total = sum(f.result() for f in counts)
        assert [s.status_code for s in swaps] == [200] * 6
        first = swaps[0].json()
        assert first["before"]["slot"] == "blue" and first["after"]["slot"] == "green"
        assert first["after"]["model_version"] == "model-b"
        assert swaps[1].json()["after"]["model_version"] == "model-a"
        version = httpx.get(base + "/version").json()
        assert version["live"]["slot"] == "blue" and version["last_swap_kind"] == "rollback"
    assert failures == [] and total > 20
    assert seen == expected  # both models answered, each from its own slot


def test_broken_candidates_never_go_live(models, tmp_path: Path) -> None:  # noqa: ANN001
    settings = make_settings(tmp_path / "home")
    (tmp_path / "empty").mkdir()
    with running_server(create_app(settings, str(models["a"]))) as base:
        before = httpx.get(base + "/version").json()["live"]
        for uri, reason in [
            (str(tmp_path / "missing"), "no such model folder"),
            (str(tmp_path / "empty"), "cannot load"),
            (str(models["raises"]), "raised"),
            (str(models["headless"]), "missing weights: classifier.bias, classifier.weight"),
            (str(models["extra"]), "unexpected weights: extra.weight"),
        ]:
            response = httpx.post(
                base + "/admin/deploy", json={"model_uri": uri}, headers=AUTH, timeout=60
            )
            assert response.status_code == 422, response.text
            assert (
                reason in response.json()["detail"]
                and "live slot unchanged" in response.json()["detail"]
            )
            assert httpx.get(base + "/version").json()["live"] == before
            assert httpx.post(base + "/predict", json=PAIR).json()["model_version"] == "model-a"
        metrics = httpx.get(base + "/metrics").text
        assert "citeops_deploy_failures_total 5.0" in metrics
        nothing = httpx.post(base + "/admin/rollback", headers=AUTH)
        assert nothing.status_code == 409 and "nothing to roll back" in nothing.json()["detail"]


def test_loader_refuses_a_checkpoint_that_does_not_match_its_model(models, tmp_path: Path) -> None:  # noqa: ANN001
    """The gate and evaluation load candidates through load_verifier: they refuse it too."""
    from citeops.tasks.classifier.artifact import ModelLoadError
    from citeops.tasks.inference.loading import load_verifier

    settings = make_settings(tmp_path / "home")
    with pytest.raises(ModelLoadError, match="missing weights: classifier.bias, classifier.weight"):
        load_verifier(str(models["headless"]), settings)
    with pytest.raises(ModelLoadError, match="unexpected weights: extra.weight"):
        load_verifier(str(models["extra"]), settings)
    assert load_verifier(str(models["a"]), settings).labels == ("SUPPORT", "NEI", "REFUTE")


def test_concurrent_deploys_one_wins_other_gets_409(models, tmp_path: Path) -> None:  # noqa: ANN001
    from citeops.tasks.inference.loading import load_verifier

    settings = make_settings(tmp_path / "home")

    def slow_loader(uri: str):  # noqa: ANN202
        time.sleep(1.0)
        return load_verifier(uri, settings)

    with running_server(
        create_app(settings, str(models["a"]), loader=slow_loader), timeout=60
    ) as base:
        with ThreadPoolExecutor(2) as pool:
            calls = [
                pool.submit(
                    httpx.post,
                    base + "/admin/deploy",
                    json={"model_uri": str(models["b"])},
                    headers=AUTH,
                    timeout=60,
                )
                for _ in range(2)
            ]
            statuses = sorted(c.result().status_code for c in calls)
        assert statuses == [200, 409]
        assert httpx.get(base + "/version").json()["live"]["model_version"] == "model-b"


def test_restart_keeps_the_live_model(models, tmp_path: Path) -> None:  # noqa: ANN001
    settings = make_settings(tmp_path / "home")
    with running_server(create_app(settings, str(models["a"]))) as base:
        deployed = httpx.post(
            base + "/admin/deploy", json={"model_uri": str(models["b"])}, headers=AUTH, timeout=60
        )
        assert deployed.status_code == 200
    with running_server(create_app(settings)) as base:  # no model URI: the persisted state
        version = httpx.get(base + "/version").json()
        assert version["live"]["slot"] == "green" and version["live"]["model_version"] == "model-b"
        assert httpx.post(base + "/predict", json=PAIR).json()["slot"] == "green"
        loaded = wait_until(lambda: httpx.get(base + "/version").json()["idle"]["loaded"])
        assert loaded, "the previous model is reloaded into the idle slot"
        back = httpx.post(base + "/admin/rollback", headers=AUTH).json()
        assert back["after"]["slot"] == "blue" and back["after"]["model_version"] == "model-a"


def test_start_without_uri_or_state_asks_for_the_champion(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    asked: list[str] = []

    def loader(uri: str):  # noqa: ANN202
        asked.append(uri)
        raise RuntimeError("no such alias")

    with running_server(create_app(settings, loader=loader), ready_path="/health") as base:
        ready = wait_until(lambda: httpx.get(base + "/ready").status_code == 503 and asked)
        assert ready
        response = httpx.get(base + "/ready")
        assert response.status_code == 503 and "no such alias" in response.json()["detail"]
        assert httpx.post(base + "/predict", json=PAIR).status_code == 503
    assert asked == [f"models:/{settings.mlflow.registered_model}@champion"]


def test_full_queue_answers_503_with_retry_after(models, tmp_path: Path) -> None:  # noqa: ANN001
    from citeops.tasks.inference.loading import load_verifier

    settings = make_settings(tmp_path / "home", queue_size=2, max_batch_size=1, max_wait_ms=0)

    def slow_loader(uri: str):  # noqa: ANN202
        verifier = load_verifier(uri, settings)
        fast = verifier.predict_encoded

        def slow(batch):  # noqa: ANN001, ANN202
            time.sleep(0.3)
            return fast(batch)

        verifier.predict_encoded = slow  # type: ignore[method-assign]
        return verifier

    with running_server(create_app(settings, str(models["a"]), loader=slow_loader)) as base:
        with ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda _: httpx.post(base + "/predict", json=PAIR, timeout=30), range(8))
            )
        statuses = [r.status_code for r in responses]
        assert 503 in statuses and 200 in statuses
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "queue is full" in busy.json()["detail"]


def test_logs_go_to_s3_as_whole_parts(models, s3_bucket: str, tmp_path: Path) -> None:  # noqa: ANN001
    import boto3

    settings = load_settings(
        profile="test",
        home=tmp_path / "home",
        log_root=f"s3://{s3_bucket}/logs",
        serve={"log_part_max_lines": 2, "log_part_max_seconds": 60},
    )
    s3 = boto3.client("s3", endpoint_url=settings.s3.endpoint_url, region_name="us-east-1")

    def keys(prefix: str) -> list[str]:
        listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)
        return [obj["Key"] for obj in listing.get("Contents", [])]

    with running_server(create_app(settings, str(models["a"]))) as base:
        ids = [httpx.post(base + "/predict", json=PAIR).json()["request_id"] for _ in range(3)]
        httpx.post(base + "/feedback", json={**PAIR, "user_label": "NEI"})
        rotated = wait_until(lambda: keys("logs/queries/"))
        assert len(rotated) == 1, "a full part (2 lines) is uploaded while the server runs"
    query_keys = keys("logs/queries/")
    assert len(query_keys) == 2 and len(keys("logs/feedback/")) == 1
    lines = []
    for key in query_keys:
        assert key.startswith("logs/queries/date=") and not key.rsplit("/", 1)[1].startswith(".")
        body = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode()
        assert body.endswith("\n")
        lines.extend(json.loads(line) for line in body.splitlines())
    assert sorted(line["request_id"] for line in lines) == sorted(ids)
    assert not list((settings.state_dir / "log-spool").rglob("*.tmp"))


def test_citeops_serve_command_serves_and_flushes_logs_on_shutdown(
    models, citeops_env: Path
) -> None:  # noqa: ANN001
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import free_port, wait_for_http

    cli = [
        sys.executable,
        "-c",
        "import sys; from citeops.flows.cli import main; main(sys.argv[1:])",
    ]
    bad = subprocess.run(
        [*cli, "serve", "--model-uri", "/no/such/model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "error: /no/such/model: no such model folder" in bad.stderr

    port = free_port()
    proc = subprocess.Popen(
        [*cli, "serve", "--model-uri", str(models["a"]), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/ready", timeout=120)
        assert httpx.get(base + "/ready").status_code == 200
        assert httpx.get(base + "/openapi.json").json()["paths"].keys() >= {
            "/predict",
            "/feedback",
            "/admin/deploy",
        }
        request_id = httpx.post(base + "/predict", json=PAIR).json()["request_id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lines = published_lines(citeops_env / "logs", "queries")
    assert [line["request_id"] for line in lines] == [request_id]  # published at shutdown


def test_serves_the_champion_alias_from_mlflow_and_pins_its_version(
    registered_tiny_model: tuple[str, str], citeops_env: Path
) -> None:
    from citeops.tasks.registry.register import set_alias

    model_uri, version = registered_tiny_model
    settings = load_settings(admin_token=TOKEN, serve={"precision": "fp32"})
    set_alias(settings, version, "champion")
    with running_server(create_app(settings)) as base:  # no URI, no state: the champion
        live = httpx.get(base + "/version").json()["live"]
        name = settings.mlflow.registered_model
        assert live["model_uri"] == f"models:/{name}@champion"
        assert (
            live["model_version"] == version and live["pinned_uri"] == f"models:/{name}/{version}"
        )
        answer = httpx.post(base + "/predict", json=PAIR).json()
        assert answer["model_version"] == version
        deployed = httpx.post(base + "/admin/deploy", json={"model_uri": model_uri}, headers=AUTH)
        assert deployed.status_code == 200 and deployed.json()["after"]["model_version"] == version
