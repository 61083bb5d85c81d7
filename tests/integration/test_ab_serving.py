"""An online phase on a real uvicorn server with two tiny models: ending an A/B split by
promotion under concurrent load loses no request, and a shadow under load never changes
an answer while its copies are logged with the challenger's label."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeops.serving.app import create_app
from citeops.serving.experiment import client_arm
from tests.integration.serve_support import running_server, save_tiny_model
from tests.integration.test_serve import AUTH, PAIR, make_settings, published_lines

pytestmark = pytest.mark.integration
CLIENTS = 6


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ab-models")
    return {
        "a": save_tiny_model(root / "model-a", seed=0),
        "b": save_tiny_model(root / "model-b", seed=1),
    }


def under_load(base: str, during: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """Run ``during()`` while :data:`CLIENTS` threads post ``/predict`` (each as a few
    client ids) without pause; returns its result, every answer, and every failure."""
    answers: list[dict[str, Any]] = []
    failures: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            i = 0
            while not stop.is_set():
                headers = {"X-Client-Id": f"user-{n}-{i % 5}"}
                response = http.post("/predict", json=PAIR, headers=headers)
                i += 1
                if response.status_code == 200:
                    answers.append(response.json() | {"client": headers["X-Client-Id"]})
                else:
                    failures.append(f"{response.status_code} {response.text}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client, n) for n in range(CLIENTS)]
        try:
            result = during()
        finally:
            stop.set()
        for future in running:
            future.result()
    return result, answers, failures


def test_ab_stop_promote_under_load_loses_no_request(models, tmp_path: Path) -> None:  # noqa: ANN001
    settings = make_settings(tmp_path / "home")
    with running_server(create_app(settings, str(models["a"]), ui=False)) as base:

        def experiment() -> list[httpx.Response]:
            started = httpx.post(
                base + "/admin/ab/start",
                json={"model_uri": str(models["b"]), "share": 0.5, "experiment_id": "exp-load"},
                headers=AUTH,
                timeout=60,
            )
            time.sleep(1.5)
            stopped = httpx.post(
                base + "/admin/ab/stop", json={"action": "promote"}, headers=AUTH, timeout=60
            )
            time.sleep(0.5)
            return [started, stopped]

        (started, stopped), answers, failures = under_load(base, experiment)
        version = httpx.get(base + "/version").json()
        status = httpx.get(base + "/admin/ab", headers=AUTH).json()
    assert started.status_code == 200 and stopped.status_code == 200, (started.text, stopped.text)
    assert failures == [] and len(answers) > 100
    seen = {(a["arm"], a["model_version"]) for a in answers}
    assert seen == {("champion", "model-a"), ("challenger", "model-b"), ("champion", "model-b")}
    assert answers[-1]["model_version"] == "model-b" and answers[-1]["arm"] == "champion"
    assert version["live"]["model_version"] == "model-b" and version["live"]["slot"] == "green"
    assert status["active"] is False and status["outcome"] == "promote"
    on_challenger = {a["client"] for a in answers if a["arm"] == "challenger"}
    assert on_challenger == {  # sticky: exactly the clients the hash puts there
        a["client"] for a in answers if client_arm("exp-load", a["client"], 0.5) == "challenger"
    }


def test_shadow_under_load_answers_from_the_champion_and_logs_both(models, tmp_path: Path) -> None:  # noqa: ANN001
    settings = make_settings(tmp_path / "home")
    with running_server(create_app(settings, str(models["a"]), ui=False)) as base:
        champion = httpx.post(base + "/predict", json=PAIR).json()

        def shadow() -> dict[str, Any]:
            started = httpx.post(
                base + "/admin/ab/start",
                json={"model_uri": str(models["b"]), "share": 1.0, "mode": "shadow"},
                headers=AUTH,
                timeout=60,
            )
            assert started.status_code == 200, started.text
            time.sleep(1.5)
            return httpx.post(
                base + "/admin/ab/stop", json={"action": "promote"}, headers=AUTH, timeout=60
            ).json()

        stopped, answers, failures = under_load(base, shadow)
        challenger = httpx.post(base + "/predict", json=PAIR).json()
        deadline = time.monotonic() + 30
        while (status := httpx.get(base + "/admin/ab", headers=AUTH).json())["shadow"]["queued"]:
            assert time.monotonic() < deadline, "shadow copies still waiting"
            time.sleep(0.05)
    assert failures == [] and stopped["outcome"] == "promote"
    keep = ("label", "probabilities")
    for answer in answers:  # before, during and after the shadow: the live model's answer
        live = champion if answer["model_version"] == "model-a" else challenger
        assert {k: answer[k] for k in keep} == {k: live[k] for k in keep}
        assert answer["arm"] == "champion"
    lines = published_lines(Path(settings.log_root or settings.home / "logs"), "queries")
    mirrored = [line for line in lines if "shadow_prediction" in line]
    counts = status["shadow"]
    assert counts["scored"] > 0 and len(mirrored) == counts["scored"]
    assert {line["shadow_prediction"] for line in mirrored} == {challenger["label"]}
    assert {line["shadow_model_version"] for line in mirrored} == {"model-b"}
    assert {line["model_version"] for line in mirrored} == {"model-a"}
    assert len({line["request_id"] for line in lines}) == len(lines)  # each line once
