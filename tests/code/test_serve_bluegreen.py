"""Blue-green switching without HTTP: deploy, smoke checks, rollback, conflicts, start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citeops.configs.settings import Settings, load_settings
from citeops.serving.bluegreen import BlueGreen, startup_uri
from citeops.serving.metrics import build_metrics
from citeops.serving.slots import (
    STATE_FILE,
    CandidateRejected,
    DeployConflict,
    SlotError,
    Slots,
    wrap_verifier,
)

LABELS = ("SUPPORT", "NEI", "REFUTE")


class FakeVerifier:
    """Scores every pair with fixed probabilities; ``probs`` may be malformed on purpose."""

    def __init__(self, name: str, probs: tuple[float, ...] = (0.7, 0.2, 0.1)) -> None:
        self.model_version = name
        self.labels = LABELS
        self.probs = probs

    def encode_pair(self, claim: str, evidence: str) -> list[int]:
        return [len(claim), len(evidence)]

    def predict_encoded(self, batch: list[list[int]]) -> np.ndarray:
        return np.array([self.probs] * len(batch), dtype=np.float32)


class Inline:
    """Runs smoke-check inference at once (stands in for the micro-batcher)."""

    async def run_exclusive(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


def make(tmp_path: Path, verifiers: dict[str, FakeVerifier], **serve: Any) -> BlueGreen:
    settings: Settings = load_settings(profile="test", home=tmp_path, serve=serve)

    def loader(uri: str) -> FakeVerifier:
        if uri not in verifiers:
            raise FileNotFoundError(f"{uri}: no such model")
        return verifiers[uri]

    slots = Slots(settings.state_dir / STATE_FILE)
    return BlueGreen(settings, slots, loader, Inline(), build_metrics())  # type: ignore[arg-type]


def counter(bluegreen: BlueGreen, name: str, **labels: str) -> float:
    value = bluegreen.metrics.registry.get_sample_value(name, labels or None)  # type: ignore[union-attr]
    return value or 0.0


def test_deploy_switches_to_the_idle_slot_and_rollback_switches_back(tmp_path: Path) -> None:
    bluegreen = make(tmp_path, {"a": FakeVerifier("a"), "b": FakeVerifier("b")})

    async def scenario() -> None:
        await bluegreen.load_initial("a", None)
        swap = await bluegreen.deploy("b")
        assert (swap.before["slot"], swap.before["model_version"]) == ("blue", "a")
        assert (swap.after["slot"], swap.after["model_version"]) == ("green", "b")
        back = await bluegreen.rollback()
        assert back.after["slot"] == "blue" and back.after["model_version"] == "a"

    asyncio.run(scenario())
    persisted = Slots(bluegreen.slots.state_path).state
    assert persisted.live == "blue" and persisted.last_swap_kind == "rollback"
    assert persisted.slots["green"].model_uri == "b"
    assert counter(bluegreen, "citeops_slot_swaps_total", kind="deploy") == 1.0
    assert counter(bluegreen, "citeops_slot_swaps_total", kind="rollback") == 1.0


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("missing", "cannot load missing"),
        ("nan", "not finite"),
        ("not-probs", "not probabilities"),
    ],
)
def test_refused_candidate_leaves_live_untouched(tmp_path: Path, uri: str, reason: str) -> None:
    bluegreen = make(
        tmp_path,
        {
            "a": FakeVerifier("a"),
            "nan": FakeVerifier("nan", (float("nan"), 0.5, 0.5)),
            "not-probs": FakeVerifier("not-probs", (0.9, 0.9, 0.9)),
        },
    )

    async def scenario() -> None:
        await bluegreen.load_initial("a", None)
        with pytest.raises(CandidateRejected, match=reason):
            await bluegreen.deploy(uri)

    asyncio.run(scenario())
    slot, model = bluegreen.live
    assert slot == "blue" and model is not None and model.model_version == "a"
    assert bluegreen.slots.models["green"] is None and "green" not in bluegreen.slots.state.slots
    assert counter(bluegreen, "citeops_deploy_failures_total") == 1.0


def test_candidate_that_disagrees_with_recent_live_answers_is_refused(tmp_path: Path) -> None:
    bluegreen = make(
        tmp_path,
        {"a": FakeVerifier("a"), "other": FakeVerifier("other", (0.1, 0.2, 0.7))},
        smoke_agreement_threshold=0.8,
    )

    async def scenario() -> None:
        await bluegreen.load_initial("a", None)
        live = bluegreen.live[1]
        assert live is not None
        for i in range(12):
            bluegreen.remember(live, f"claim {i}", "evidence", "SUPPORT")
        with pytest.raises(CandidateRejected, match="agreement .* is 0.000"):
            await bluegreen.deploy("other")
        assert (await bluegreen.deploy("a")).after["slot"] == "green"  # agrees: goes live

    asyncio.run(scenario())


def test_second_switch_while_one_runs_gets_a_conflict(tmp_path: Path) -> None:
    class Slow(Inline):
        async def run_exclusive(self, fn: Callable[..., Any], *args: Any) -> Any:
            await asyncio.sleep(0.2)
            return fn(*args)

    bluegreen = make(tmp_path, {"a": FakeVerifier("a"), "b": FakeVerifier("b")})
    bluegreen.runner = Slow()

    async def scenario() -> list[str]:
        await bluegreen.load_initial("a", None)
        first = asyncio.create_task(bluegreen.deploy("b"))
        await asyncio.sleep(0.05)
        outcomes = []
        for call in (lambda: bluegreen.deploy("b"), bluegreen.rollback):
            try:
                await call()
            except DeployConflict:
                outcomes.append("conflict")
        await first
        return outcomes

    assert asyncio.run(scenario()) == ["conflict", "conflict"]
    assert bluegreen.live[0] == "green"


def test_rollback_with_an_empty_idle_slot_is_refused(tmp_path: Path) -> None:
    bluegreen = make(tmp_path, {"a": FakeVerifier("a")})

    async def scenario() -> None:
        await bluegreen.load_initial("a", None)
        with pytest.raises(SlotError, match="nothing to roll back to: the idle slot green"):
            await bluegreen.rollback()

    asyncio.run(scenario())
    assert bluegreen.live[0] == "blue"


def test_start_up_records_a_load_failure_and_reloads_the_persisted_idle_slot(
    tmp_path: Path,
) -> None:
    verifiers = {"a": FakeVerifier("a"), "b": FakeVerifier("b")}
    first = make(tmp_path, verifiers)
    asyncio.run(first.load_initial("a", None))
    asyncio.run(first.deploy("b"))

    again = make(tmp_path, verifiers)
    assert startup_uri(again.settings, None) == ("b", "b")  # the persisted live slot
    asyncio.run(again.load_initial(None, None))
    assert again.live[0] == "green" and again.slots.models["blue"] is not None

    broken = make(tmp_path / "other", verifiers)
    asyncio.run(broken.load_initial("missing", None))
    assert broken.live[1] is None and "missing: no such model" in (broken.load_error or "")
    name = broken.settings.mlflow.registered_model
    assert startup_uri(broken.settings, None)[0] == f"models:/{name}@champion"


def test_an_already_loaded_model_is_installed_without_the_loader(tmp_path: Path) -> None:
    bluegreen = make(tmp_path, {})
    initial = wrap_verifier(FakeVerifier("given"), "folder/given")  # type: ignore[arg-type]
    asyncio.run(bluegreen.load_initial("folder/given", initial))
    assert bluegreen.live[1] is initial and bluegreen.load_error is None
