"""Serving parts without a server: batch planning, log parts, input checks, slot state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from citeops.serving.batcher import MicroBatcher, QueueFull, plan_batches
from citeops.serving.logwriter import LocalSink, LogWriter, drop_partial_line
from citeops.serving.schemas import BadInput, check_label, check_text
from citeops.serving.slots import SlotRecord, SlotState, check_smoke_outputs, wrap_verifier

LABELS = ("SUPPORT", "NEI", "REFUTE")


def test_plan_batches_covers_every_position_once_and_groups_by_length() -> None:
    lengths = [300, 12, 290, 15, 500, 14, 310, 480]
    batches = plan_batches(lengths, max_batch=3, max_pad_ratio=1.3)
    flat = sorted(p for batch in batches for p in batch)
    assert flat == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        real = sum(lengths[p] for p in batch)
        assert max(lengths[p] for p in batch) * len(batch) <= 1.3 * real
    # short and long pairs never share a batch
    assert not any({1, 4} <= set(batch) for batch in batches)


def test_plan_batches_keeps_padded_tokens_under_the_budget() -> None:
    lengths = [100, 110, 120, 130, 600, 40, 45, 50, 55, 60]
    batches = plan_batches(lengths, max_batch=16, max_pad_ratio=10, max_tokens=256)
    for batch in batches:
        padded = max(lengths[p] for p in batch) * len(batch)
        assert padded <= 256 or len(batch) == 1  # a pair over the budget goes alone
    assert [4] in batches


def test_plan_batches_without_pad_limit_fills_batches() -> None:
    assert [len(b) for b in plan_batches([5] * 10, max_batch=4, max_pad_ratio=100)] == [4, 4, 2]


def _read_lines(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.rglob("*.jsonl")):
        if path.name.startswith("."):
            continue
        rows.extend(json.loads(line) for line in path.read_text().splitlines())
    return rows


def test_log_writer_rotates_by_lines_and_publishes_at_close(tmp_path: Path) -> None:
    writer = LogWriter(LocalSink(tmp_path), max_lines=2, max_seconds=60)
    writer.start()
    for i in range(5):
        writer.write("queries", {"request_id": str(i), "datetime": "2026-01-02T03:04:05+00:00"})
    writer.write("feedback", {"claim": "c", "datetime": "2026-01-03T00:00:00+00:00"})
    writer.close()
    parts = (tmp_path / "queries" / "date=2026-01-02").glob("*.jsonl")
    assert sorted(len(p.read_text().splitlines()) for p in parts) == [1, 2, 2]
    assert sorted(r["request_id"] for r in _read_lines(tmp_path / "queries")) == list("01234")
    assert len(list((tmp_path / "feedback" / "date=2026-01-03").glob("*.jsonl"))) == 1
    assert not list(tmp_path.rglob(".*")), "no hidden part may remain after close"


def test_log_writer_keeps_open_part_hidden_until_it_rotates(tmp_path: Path) -> None:
    writer = LogWriter(LocalSink(tmp_path), max_lines=100, max_seconds=0.3)
    writer.start()
    try:
        writer.write("queries", {"request_id": "a", "datetime": "2026-01-02T00:00:00+00:00"})
        folder = tmp_path / "queries" / "date=2026-01-02"
        import time

        time.sleep(0.1)
        assert [p.name.startswith(".") for p in folder.iterdir()] == [True]
        deadline = time.monotonic() + 5
        while not list(folder.glob("[!.]*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["request_id"] for r in _read_lines(tmp_path)] == ["a"]
    finally:
        writer.close()


def test_drop_partial_line_keeps_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / ".part.jsonl.tmp"
    path.write_bytes(b'{"a":1}\n{"b":')
    drop_partial_line(path)
    assert path.read_bytes() == b'{"a":1}\n'


@pytest.mark.parametrize(
    ("value", "message"), [("", "empty"), ("  \n\t", "whitespace"), ("x" * 11, "at most 10")]
)
def test_check_text_names_the_field(value: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        check_text("claim", value, max_chars=10)
    assert info.value.field == "claim"


def test_check_label_accepts_any_case_and_rejects_unknown() -> None:
    assert check_label("user_label", " support ", LABELS) == "SUPPORT"
    with pytest.raises(BadInput, match="user_label: unknown label 'MAYBE'"):
        check_label("user_label", "MAYBE", LABELS)


def test_slot_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state" / "slots.json"
    state = SlotState(
        live="green", slots={"green": SlotRecord("models:/m@champion", "models:/m/3", "3")}
    )
    state.write(path)
    again = SlotState.read(path)
    assert again.live == "green" and again.slots["green"].pinned_uri == "models:/m/3"
    assert SlotState.read(tmp_path / "missing.json").live == "blue"


def test_wrap_verifier_pins_alias_uris_to_their_version() -> None:
    verifier = SimpleNamespace(model_version="7")
    model = wrap_verifier(verifier, "models:/claim-verifier@champion")  # type: ignore[arg-type]
    assert model.pinned_uri == "models:/claim-verifier/7" and model.model_version == "7"
    folder = wrap_verifier(SimpleNamespace(model_version=None), "/x/run-12")  # type: ignore[arg-type]
    assert folder.pinned_uri == "/x/run-12" and folder.model_version == "run-12"


def test_smoke_outputs_reject_malformed_probabilities() -> None:
    good = np.full((4, 3), 1 / 3, dtype=np.float32)
    check_smoke_outputs(good, LABELS, LABELS)
    from citeops.serving.slots import CandidateRejected

    with pytest.raises(CandidateRejected, match="labels"):
        check_smoke_outputs(good, ("A", "B", "C"), LABELS)
    with pytest.raises(CandidateRejected, match="finite"):
        check_smoke_outputs(np.full((4, 3), np.nan), LABELS, LABELS)
    with pytest.raises(CandidateRejected, match="shape"):
        check_smoke_outputs(good[:, :2], LABELS, LABELS)


def test_batcher_refuses_when_queue_is_full_and_answers_queued_pairs() -> None:
    class Echo:
        labels = LABELS

        def predict_encoded(self, batch):  # noqa: ANN001
            return np.array([[len(ids), 0.0, 0.0] for ids in batch], dtype=np.float32)

    model = SimpleNamespace(verifier=Echo(), batching=None)

    async def scenario() -> tuple[list[float], bool]:
        batcher = MicroBatcher(max_batch_size=4, max_wait_ms=1, queue_size=3)
        batcher.start()
        futures = batcher.submit_many(model, [[1], [1, 2], [1, 2, 3]])  # type: ignore[arg-type]
        refused = False
        try:
            batcher.submit_many(model, [[9]])  # type: ignore[arg-type]
        except QueueFull:
            refused = True
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return [float(r[0]) for r in results], refused

    lengths, refused = asyncio.run(scenario())
    assert refused
    assert lengths == [1.0, 2.0, 3.0]  # each future gets its own pair's row


def test_predict_encoded_matches_predict_proba(tmp_path: Path) -> None:
    from citeops.configs.settings import load_settings
    from citeops.tasks.classifier.base import load_base
    from citeops.tasks.inference.predictor import ClaimVerifier

    model, tokenizer = load_base(load_settings().model)
    verifier = ClaimVerifier(model, tokenizer, max_length=64)
    claims = ["Aspirin prevents cancer.", "A much longer claim about proteins " * 3, "x"]
    evidences = ["Aspirin was associated with fewer cancers.", "Proteins fold. " * 20, "y z"]
    encoded = [verifier.encode_pair(c, e) for c, e in zip(claims, evidences, strict=True)]
    assert max(len(ids) for ids in encoded) == 64  # truncated to max_length
    first_sep = encoded[0].index(tokenizer.sep_token_id)
    assert tokenizer.decode(encoded[0][1:first_sep]).startswith("aspirin was associated")
    reference = verifier.predict_proba(claims, evidences)
    together = verifier.predict_encoded(encoded)
    alone = np.vstack([verifier.predict_encoded([ids]) for ids in encoded])
    np.testing.assert_allclose(together, reference, atol=1e-5)
    np.testing.assert_allclose(alone, reference, atol=1e-5)


def test_omp_wait_policy_is_exported_unless_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from citeops.configs.settings import load_settings
    from citeops.serving.server import apply_omp_wait_policy

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    apply_omp_wait_policy(load_settings(serve={"omp_wait_policy": "inherit"}))
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    apply_omp_wait_policy(load_settings())
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_bf16_predictions_stay_close_to_fp32() -> None:
    from citeops.configs.settings import load_settings
    from citeops.tasks.classifier.base import load_base
    from citeops.tasks.inference.predictor import ClaimVerifier

    model, tokenizer = load_base(load_settings().model)
    fp32 = ClaimVerifier(model, tokenizer, max_length=64)
    encoded = [fp32.encode_pair("Aspirin prevents cancer.", "Aspirin was linked to fewer cancers.")]
    reference = fp32.predict_encoded(encoded)
    fp32.precision = "bf16"
    reduced = fp32.predict_encoded(encoded)
    assert reduced.dtype == np.float32 and reduced.shape == reference.shape
    np.testing.assert_allclose(reduced, reference, atol=0.02)


DAY = "2026-01-02T03:04:05+00:00"


def test_hidden_part_left_by_a_dead_writer_is_published_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "feedback" / "date=2026-01-02"
    folder.mkdir(parents=True)
    (folder / ".20260102T030405-h-1-abc.jsonl.tmp").write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    (folder / ".20260102T030406-h-1-def.jsonl.tmp").write_bytes(b"")  # opened, nothing written
    writer = LogWriter(LocalSink(tmp_path), max_lines=100, max_seconds=60)
    writer.start()
    writer.close()
    assert [r["a"] for r in _read_lines(tmp_path)] == [1, 2]
    assert (folder / "20260102T030405-h-1-abc.jsonl").is_file()
    assert (folder / "20260102T030405-h-1-abc.jsonl.torn").read_bytes() == b'{"a":'
    assert not list(tmp_path.rglob(".*")), "every hidden part is published or removed"


def test_part_of_a_live_writer_is_not_taken_by_a_second_writer(tmp_path: Path) -> None:
    first = LogWriter(LocalSink(tmp_path), max_lines=100, max_seconds=60)
    first.start()
    asyncio.run(first_line(first))
    second = LogWriter(LocalSink(tmp_path), max_lines=100, max_seconds=60)
    second.start()
    second.close()
    assert _read_lines(tmp_path) == [], "the live writer's part stays hidden and its own"
    first.close()
    assert [r["n"] for r in _read_lines(tmp_path)] == [1]


async def first_line(writer: LogWriter) -> None:
    await writer.write_durable("queries", {"n": 1, "datetime": DAY}, timeout=10)


def test_killed_writer_loses_no_durably_written_line(tmp_path: Path) -> None:
    """kill -9 right after write_durable returned: the next writer publishes every line."""
    import os
    import signal
    import subprocess
    import sys

    script = f"""
import asyncio, os, signal
from pathlib import Path
from citeops.serving.logwriter import LocalSink, LogWriter

async def main():
    writer = LogWriter(LocalSink(Path({str(tmp_path)!r})), max_lines=1000, max_seconds=600)
    writer.start()
    for i in range(200):
        await writer.write_durable("feedback", {{"n": i, "datetime": "{DAY}"}}, timeout=10)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL
    assert _read_lines(tmp_path) == [] and list(tmp_path.rglob(".*.jsonl.tmp"))
    writer = LogWriter(LocalSink(tmp_path), max_lines=1000, max_seconds=600)
    writer.start()
    writer.close()
    assert sorted(r["n"] for r in _read_lines(tmp_path)) == list(range(200))
    assert os.listdir(tmp_path / "feedback" / "date=2026-01-02")[0].endswith(".jsonl")


def test_write_durable_refuses_a_record_it_cannot_encode_and_keeps_writing(
    tmp_path: Path,
) -> None:
    from citeops.serving.logwriter import LogWriteFailed

    writer = LogWriter(LocalSink(tmp_path), max_lines=100, max_seconds=60)
    writer.start()

    async def scenario() -> None:
        with pytest.raises(LogWriteFailed, match="not writable"):
            await writer.write_durable("feedback", {"claim": "\ud800", "datetime": DAY}, 10)
        await writer.write_durable("feedback", {"claim": "ok", "datetime": DAY}, 10)

    asyncio.run(scenario())
    writer.close()
    assert [r["claim"] for r in _read_lines(tmp_path)] == ["ok"]
    assert writer.stats.write_errors == 1


def test_write_durable_refuses_when_the_writer_is_not_running(tmp_path: Path) -> None:
    from citeops.serving.logwriter import LogWriteFailed

    writer = LogWriter(LocalSink(tmp_path), max_lines=100, max_seconds=60)
    with pytest.raises(LogWriteFailed, match="not accepting"):
        asyncio.run(writer.write_durable("feedback", {"datetime": DAY}, 1))


@pytest.mark.parametrize(("value", "message"), [("a\x00b", "NUL"), ("a\ud800", "lone surrogate")])
def test_check_text_refuses_text_that_cannot_be_stored(value: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as info:
        check_text("evidence", value, max_chars=100)
    assert info.value.field == "evidence"


def test_api_text_limits_are_ingestions_limits() -> None:
    from citeops.configs.settings import load_settings
    from citeops.serving.schemas import TextLimits
    from citeops.tasks.logcontract import MAX_META_CHARS

    settings = load_settings(profile="test")
    limits = TextLimits.from_settings(settings)
    assert limits.claim <= settings.ingest.max_claim_chars
    assert limits.evidence <= settings.ingest.max_evidence_chars
    assert limits.request_id == MAX_META_CHARS
    tight = TextLimits.from_settings(
        load_settings(profile="test", ingest={"max_claim_chars": 50}, serve={"max_text_chars": 80})
    )
    assert (tight.claim, tight.evidence) == (50, 80)
