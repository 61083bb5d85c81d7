"""The retrain flow and promotion against real uvicorn endpoints, with the tiny model.

Each test gets its own CITEOPS_HOME (MLflow store, curated store); the endpoints run in
threads on free ports and load models from the same MLflow store, as a deployed replica
would. Gate thresholds are set per test so the outcome does not hang on how well a tiny
random model happens to do: the gate's rules themselves are tested in test_gate.py.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeops.configs.settings import Settings, load_settings
from tests.integration.serve_support import running_server

pytestmark = pytest.mark.integration
TOKEN = "retrain-test-token"
LENIENT_GATE = {
    "CITEOPS_GATE__MIN_IMPROVEMENT": "-1",
    "CITEOPS_GATE__MAX_F1_DROP": "1",
    "CITEOPS_GATE__MAX_LATENCY_INCREASE": "100",
}


@pytest.fixture
def env(citeops_env: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness) -> pytest.MonkeyPatch:
    monkeypatch.setenv("CITEOPS_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("CITEOPS_SERVE__PRECISION", "fp32")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_SECONDS", "1")
    monkeypatch.setenv("CITEOPS_PROMOTE__BAKE_POLL_SECONDS", "0.2")
    return monkeypatch


def register_tiny(alias: str | None, favour: int | None = None, seed: int = 0) -> str:
    """Register a tiny random BERT (its head biased towards label ``favour``); its version."""
    from citeops.tasks.classifier.artifact import save_hf_folder
    from citeops.tasks.classifier.base import build_tiny
    from citeops.tasks.data.multivers import LABELS
    from citeops.tasks.registry.register import register_folder

    settings = load_settings()
    model, tokenizer = build_tiny(settings.model, seed=seed)
    if favour is not None:
        import torch

        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor([-4.0, -4.0, -4.0]))
            model.classifier.bias[favour] = 4.0
    meta = {"labels": list(LABELS), "max_length": settings.model.max_length, "base_model": "tiny"}
    with tempfile.TemporaryDirectory(prefix="citeops-tiny-") as tmp:
        folder = save_hf_folder(model, tokenizer, Path(tmp) / "hf_model", meta)
        return register_folder(settings, folder, run_name="tiny", alias=alias).version


@contextmanager
def endpoint(model_uri: str, loader: Any = None) -> Iterator[str]:
    """A serving endpoint (real uvicorn) started on ``model_uri``; yields its base URL."""
    from citeops.serving.app import create_app

    settings = load_settings(admin_token=TOKEN)
    with running_server(create_app(settings, model_uri, loader=loader)) as base:
        yield base


@contextmanager
def endpoints(monkeypatch: pytest.MonkeyPatch, *uris: str, loaders: Any = ()) -> Iterator[list]:
    """Several endpoints, named in ``promote.endpoints`` for the promotion to use."""
    with ExitStack() as stack:
        bases = [
            stack.enter_context(endpoint(uri, loaders[i] if i < len(loaders) else None))
            for i, uri in enumerate(uris)
        ]
        monkeypatch.setenv(
            "CITEOPS_PROMOTE__ENDPOINTS", "[" + ",".join(f'"{b}"' for b in bases) + "]"
        )
        yield bases


def live(base: str) -> str:
    return httpx.get(f"{base}/version").json()["live"]["model_version"]


def aliases(settings: Settings) -> dict[str, str | None]:
    from citeops.tasks.registry.register import get_version_by_alias

    return {a: get_version_by_alias(settings, a) for a in ("champion", "previous", "challenger")}


def registered_versions(settings: Settings) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri)
    return len(client.search_model_versions(f"name='{settings.mlflow.registered_model}'"))


def artifact_keys(flow_run_id: str) -> set[str]:
    """Keys of the Prefect artifacts a flow run (and its tasks) published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in found if a.key}


def test_retrain_skips_when_the_trigger_does_not_fire(env) -> None:
    from citeops.flows.retrain import retrain
    from citeops.tasks.store.promotions import list_records

    settings = load_settings()
    record = retrain(force=False)
    assert record["outcome"] == "skipped"
    assert "new feedback" in record["detail"]
    assert registered_versions(settings) == 0
    assert [r.outcome for r in list_records(settings)] == ["skipped"]


def test_forced_retrain_promotes_then_rollback_restores(env, tmp_path: Path) -> None:
    from citeops.flows.cli import main
    from citeops.flows.retrain import retrain
    from citeops.tasks.store.promotions import list_records

    for key, value in LENIENT_GATE.items():
        env.setenv(key, value)
    settings = load_settings()
    old = register_tiny("champion", favour=2)  # always REFUTE: a weak champion
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        assert live(base) == old
        record = retrain(force=True)
        new = record["version"]
        assert record["outcome"] == "promoted", record["detail"]
        assert live(base) == new != old
        assert aliases(settings) == {"champion": new, "previous": old, "challenger": None}
        assert record["gate"]["passed"] is True
        assert {row["benchmark"] for row in record["gate"]["rows"]} >= {"scifact", "citint"}
        assert record["bake"]["endpoints"][0]["ready"] is True
        assert record["cost_usd"] is not None and record["mlflow_run_ids"]["train"]
        assert "forced" in record["trigger"]["causes"]
        assert {"training-set", "candidate", "candidate-vs-champion", "bake"} <= artifact_keys(
            record["flow_run_id"]
        )

        with pytest.raises(SystemExit) as done:
            main(["rollback", "--json"])
        assert done.value.code == 0
        assert live(base) == old
        assert aliases(settings)["champion"] == old
        assert aliases(settings)["previous"] == new

    history = [r.to_dict() for r in list_records(settings)]
    assert [(r["kind"], r["outcome"]) for r in history] == [
        ("rollback", "rollback"),
        ("retrain", "promoted"),
    ]
    assert history[1]["promoted_at"] is not None


def test_candidate_refused_by_the_gate_leaves_the_champion(env) -> None:
    from citeops.flows.retrain import retrain
    from citeops.tasks.store.promotions import list_records
    from citeops.tasks.validate.gate import GateFailed

    env.setenv("CITEOPS_GATE__MIN_IMPROVEMENT", "0.9")  # no candidate can gain 0.9 F1
    settings = load_settings()
    old = register_tiny("champion", favour=2)
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        with pytest.raises(GateFailed, match="min_improvement"):
            retrain(force=True)
        assert live(base) == old
    (record,) = list_records(settings)
    assert record.outcome == "gate_failed"
    assert record.gate["passed"] is False and record.gate["reasons"]
    assert aliases(settings)["champion"] == old
    assert aliases(settings)["challenger"] == record.version  # registered, not promoted


def test_promotion_refused_by_a_smoke_check_keeps_the_champion(env, tmp_path: Path) -> None:
    from citeops.tasks.registry.register import register_folder
    from citeops.tasks.release.lifecycle import promote_version
    from citeops.tasks.release.promote import PromotionFailed
    from tests.integration.serve_support import save_tiny_model

    old = register_tiny("champion")
    broken = save_tiny_model(tmp_path / "raises", vocab_size=50)  # raises on real input
    bad = register_folder(load_settings(), broken, run_name="broken").version
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        with pytest.raises(PromotionFailed, match="smoke"):
            promote_version(load_settings(), bad, skip_gate=True)
        assert live(base) == old
    assert aliases(load_settings())["champion"] == old
    from citeops.tasks.store.promotions import list_records

    (record,) = list_records(load_settings())
    assert record.outcome == "failed"  # refused before any endpoint switched
    assert record.gate["skipped"] is True


def test_bake_breach_rolls_back_and_leaves_aliases(env) -> None:
    from citeops.tasks.release.lifecycle import promote_version
    from citeops.tasks.release.promote import BakeFailed
    from citeops.tasks.store.promotions import list_records

    env.setenv("CITEOPS_PROMOTE__MAX_P95_MS", "0")  # any request during the bake breaks it
    env.setenv("CITEOPS_PROMOTE__BAKE_SECONDS", "3")
    old = register_tiny("champion", seed=0)
    new = register_tiny(None, seed=1)
    with endpoints(env, f"models:/claim-verifier/{old}") as (base,):
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                httpx.post(f"{base}/predict", json={"claim": "A claim.", "evidence": "Text."})

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            with pytest.raises(BakeFailed, match="p95 latency"):
                promote_version(load_settings(), new, skip_gate=True)
        finally:
            stop.set()
            sender.join(10)
        assert live(base) == old
    assert aliases(load_settings())["champion"] == old
    (record,) = list_records(load_settings())
    assert record.outcome == "rolled_back" and record.bake["endpoints"][0]["breach"]


def test_second_endpoint_refusing_rolls_the_first_back(env) -> None:
    from citeops.tasks.inference.loading import load_verifier
    from citeops.tasks.release.lifecycle import promote_version
    from citeops.tasks.release.promote import PromotionFailed

    old = register_tiny("champion", seed=0)
    new = register_tiny(None, seed=1)
    settings = load_settings()

    def refuses_new(uri: str) -> Any:
        if uri.endswith(f"/{new}"):
            raise RuntimeError("this replica cannot load the candidate")
        return load_verifier(uri, settings, "fp32")

    first_uri = f"models:/claim-verifier/{old}"
    with endpoints(env, first_uri, first_uri, loaders=(None, refuses_new)) as (one, two):
        with pytest.raises(PromotionFailed, match="rolled back") as refused:
            promote_version(load_settings(), new, skip_gate=True)
        assert refused.value.rolled_back == (one,)
        assert live(one) == old and live(two) == old
    assert aliases(load_settings())["champion"] == old
    from citeops.tasks.store.promotions import list_records

    assert list_records(load_settings())[0].outcome == "rolled_back"


def test_one_retrain_at_a_time_and_a_killed_holder_frees_the_lock(env) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from citeops.tasks.store.promotions import LockHeld, hold_lock

    settings = load_settings()
    with hold_lock(settings):
        with pytest.raises(LockHeld, match="holds the lock"):
            with hold_lock(settings):
                pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from citeops.configs.settings import load_settings;"
            "from citeops.tasks.store.promotions import hold_lock\n"
            "with hold_lock(load_settings()):\n print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld):
            with hold_lock(settings):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        time.sleep(0.1)
        with hold_lock(settings):  # the dead holder's lock is taken over
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
