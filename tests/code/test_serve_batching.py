"""Micro-batching budgets per runtime: settings, resolution, the batcher, /version, /metrics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from citeops.configs.settings import SettingsError, load_settings
from citeops.serving.batcher import BatchBudget, MicroBatcher, batch_budget
from citeops.serving.logwriter import LogWriterStats
from citeops.serving.metrics import refresh_gauges
from citeops.tasks.inference import runtimes
from tests.code.test_serve_bluegreen import FakeVerifier, make

OPENVINO_TOKENS = {"openvino": {"max_batch_tokens": 1024}}


def test_a_runtime_override_replaces_only_the_values_it_sets() -> None:
    serve = load_settings(serve={"batching": OPENVINO_TOKENS, "max_wait_ms": 3}).serve
    assert batch_budget(serve, "openvino") == BatchBudget(16, 1024, 3.0)
    assert batch_budget(serve, "onnxruntime") == BatchBudget(16, 512, 3.0)  # the defaults
    assert batch_budget(serve, "torch") == BatchBudget(16, 2048, 3.0)  # its measured budget


def test_a_budget_set_for_every_runtime_wins_over_a_measured_default() -> None:
    assert batch_budget(load_settings().serve, "torch").max_batch_tokens == 2048
    serve = load_settings(serve={"max_batch_tokens": 768}).serve
    assert batch_budget(serve, "torch").max_batch_tokens == 768
    assert batch_budget(serve, "openvino").max_batch_tokens == 768
    serve = load_settings(serve={"batching": {"torch": {"max_batch_tokens": 256}}}).serve
    assert batch_budget(serve, "torch").max_batch_tokens == 256


def test_overrides_come_from_the_environment_per_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITEOPS_SERVE__BATCHING__ONNXRUNTIME__MAX_WAIT_MS", "0")
    monkeypatch.setenv("CITEOPS_SERVE__BATCHING__ONNXRUNTIME__MAX_BATCH_SIZE", "32")
    assert batch_budget(load_settings().serve, "onnxruntime") == BatchBudget(32, 512, 0.0)


@pytest.mark.parametrize(
    ("batching", "message"),
    [
        (
            {"gpu": {"max_batch_tokens": 8}},
            "serve.batching (CITEOPS_SERVE__BATCHING): Value error, unknown runtime gpu",
        ),
        ({"torch": {"max_tokens": 8}}, "serve.batching.torch.max_tokens"),
        ({"openvino": {"max_batch_tokens": 0}}, "serve.batching.openvino.max_batch_tokens"),
    ],
    ids=["unknown-runtime", "unknown-field", "zero-budget"],
)
def test_a_bad_override_is_refused_naming_the_setting(batching: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(serve={"batching": batching})


class Recorder:
    """Returns uniform probabilities and records the size of every batch it gets."""

    labels = ("SUPPORT", "NEI", "REFUTE")

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def predict_encoded(self, batch: list[list[int]]) -> np.ndarray:
        self.sizes.append(len(batch))
        return np.full((len(batch), 3), 1 / 3, dtype=np.float32)


def test_each_models_pairs_are_batched_under_its_own_budget() -> None:
    tight = SimpleNamespace(verifier=Recorder(), batching=BatchBudget(16, 8, 0.0))
    roomy = SimpleNamespace(verifier=Recorder(), batching=None)  # the batcher's default

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch_size=16, max_wait_ms=0, queue_size=64)
        batcher.start()
        pairs = [[1, 2, 3, 4]] * 6  # 4 tokens each: 2 fit under 8 padded tokens
        futures = batcher.submit_many(tight, pairs) + batcher.submit_many(roomy, pairs)  # type: ignore[arg-type]
        await asyncio.gather(*futures)
        await batcher.stop()

    asyncio.run(scenario())
    assert tight.verifier.sizes == [2, 2, 2]
    assert roomy.verifier.sizes == [6]


def test_a_deployed_model_reports_its_runtimes_budget_in_version_and_metrics(
    tmp_path: Path,
) -> None:
    openvino = FakeVerifier("ov")
    openvino.runtime = "openvino"  # type: ignore[attr-defined]
    bluegreen = make(tmp_path, {"a": FakeVerifier("a"), "ov": openvino}, batching=OPENVINO_TOKENS)

    async def scenario() -> None:
        await bluegreen.load_initial("a", None)
        await bluegreen.deploy("ov")

    asyncio.run(scenario())
    status = bluegreen.slots.describe()
    assert status["live"]["batching"] == {
        "max_batch_size": 16,
        "max_batch_tokens": 1024,
        "max_wait_ms": 5.0,
    }
    assert status["idle"]["batching"]["max_batch_tokens"] == 2048  # torch: its measured default
    metrics = bluegreen.metrics
    assert metrics is not None
    refresh_gauges(metrics, bluegreen.slots, LogWriterStats(), 0)
    live = {"slot": status["live"]["slot"], "runtime": "openvino"}
    value = metrics.registry.get_sample_value
    assert value("citeops_slot_batch_budget", {**live, "limit": "max_batch_tokens"}) == 1024
    assert value("citeops_slot_batch_budget", {**live, "limit": "max_wait_ms"}) == 5.0
    runtime = {**live, "precision": "fp32", "device": "cpu", "basis": "configured"}
    assert value("citeops_slot_runtime_info", runtime) == 1.0


def test_auto_calibrates_again_when_a_runtimes_budget_changes() -> None:
    verifier = SimpleNamespace(meta={})
    default = runtimes.decision_key(verifier, load_settings())  # type: ignore[arg-type]
    tuned = load_settings(serve={"batching": OPENVINO_TOKENS})
    assert runtimes.decision_key(verifier, tuned) != default  # type: ignore[arg-type]
    assert runtimes.decision_key(verifier, load_settings()) == default  # type: ignore[arg-type]
