"""The S3 API down while a serving endpoint uploads its log parts.

A real uvicorn endpoint (tiny model) logs to ``s3://bucket/prefix`` on a moto_server of the
test's own. Requests answered before the fault are read back from S3; then the S3 API is
killed and more requests are answered while the parts rotate (their uploads fail and stay in
the local spool); the endpoint is stopped (graceful) while S3 is still down. S3 comes back
empty (moto keeps objects in memory: the test recreates the bucket), the endpoint starts
again on the same home: the spooled parts are uploaded. Every acknowledged request's line is
in S3 exactly once (before the kill plus after the restart), and no request got a 5xx.

A second test stops (SIGSTOP) rather than kills the S3 API: connections open and no answer.
Uploads then hang; the /feedback acknowledgements, which wait for the local part file only,
must not (they used to wait behind the hung upload and answer 503).
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from citeops.configs.settings import Settings, load_settings
from citeops.serving.app import create_app
from tests.integration.serve_support import running_server, save_tiny_model
from tests.integration.test_faults_s3 import BUCKET, PREFIX, MotoServer, moto
from tests.integration.test_serve import wait_until

pytestmark = pytest.mark.integration
__all__ = ["moto"]
PAIR = {"claim": "Aspirin lowers the risk of colon cancer.", "evidence": "Fewer cancers."}
STREAM_ID = {"queries": "request_id", "feedback": "feedback_id"}


def _settings(home: Path) -> Settings:
    return load_settings(
        profile="test",
        home=home,
        log_root=f"s3://{BUCKET}/{PREFIX}",
        serve={"log_part_max_seconds": 0.3, "log_part_max_lines": 7, "precision": "fp32"},
        feedback={"rate_per_minute": 100_000, "rate_burst": 1000},
    )


def _create_bucket(url: str) -> Any:
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def _ids_in_s3(client: Any) -> Counter[tuple[str, str]]:
    """``(stream, id)`` of every line of every published object under the log root."""
    found: Counter[tuple[str, str]] = Counter()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            stream = key.removeprefix(PREFIX + "/").split("/", 1)[0]
            assert not key.rsplit("/", 1)[-1].startswith("."), key  # only whole parts
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            found.update(
                (stream, json.loads(line)[STREAM_ID[stream]]) for line in body.splitlines()
            )
    return found


def _acknowledged_requests(
    base: str, count: int, tag: str
) -> tuple[set[tuple[str, str]], list[int]]:
    """Send ``count`` /predict and /feedback pairs; the ids of those acknowledged (200 /
    202) and every status code seen."""
    acked: set[tuple[str, str]] = set()
    codes: list[int] = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(count):
            pair = {**PAIR, "claim": f"{PAIR['claim']} {tag}-{i}"}
            answer = http.post("/predict", json=pair)
            codes.append(answer.status_code)
            if answer.status_code != 200:
                continue
            request_id = answer.json()["request_id"]
            acked.add(("queries", request_id))
            feedback = http.post(
                "/feedback", json={**pair, "request_id": request_id, "user_label": "SUPPORT"}
            )
            codes.append(feedback.status_code)
            if feedback.status_code == 202:
                acked.add(("feedback", feedback.json()["id"]))
    return acked, codes


@contextmanager
def _endpoint(settings: Settings, model: Path) -> Iterator[tuple[str, Any]]:
    """The endpoint and its log writer; leaving stops it gracefully (open parts published)."""
    app = create_app(settings, str(model), ui=False)
    with running_server(app) as base:
        yield base, app.state.serving.writer


def test_s3_down_while_the_endpoint_uploads_log_parts_loses_no_acknowledged_line(
    moto: MotoServer, tmp_path: Path
) -> None:
    model = save_tiny_model(tmp_path / "model")
    settings = _settings(tmp_path / "home")
    spool = settings.state_dir / "log-spool"
    client = _create_bucket(moto.url)

    with _endpoint(settings, model) as (base, writer):
        before, codes = _acknowledged_requests(base, 10, "before")
        assert wait_until(lambda: set(_ids_in_s3(client)) >= before, 30), "in S3 before the fault"
        uploaded_before = _ids_in_s3(client)  # moto forgets them when it is killed
        moto.kill()
        during, more_codes = _acknowledged_requests(base, 15, "during")
        codes += more_codes
        assert wait_until(lambda: writer.stats.publish_errors >= 2, 30), "uploads did not fail"
    assert all(code < 500 for code in codes), Counter(codes)
    assert len(before) == 20 and len(during) == 30  # every request acknowledged
    spooled = [p for p in spool.rglob("*.jsonl.tmp") if p.stat().st_size > 0]
    assert spooled, "the parts that could not be uploaded are kept in the local spool"

    moto.start()
    client = _create_bucket(moto.url)
    with _endpoint(settings, model):
        assert wait_until(lambda: set(_ids_in_s3(client)) >= during, 30), "spool not uploaded"
    uploaded_after = _ids_in_s3(client)
    every = uploaded_before + uploaded_after
    assert set(every) == before | during
    assert max(every.values()) == 1, [k for k, n in every.items() if n > 1]  # exactly once
    assert not list(spool.rglob("*.jsonl*")), "the spool is empty once every part is uploaded"


def test_s3_hanging_while_parts_rotate_does_not_hold_acknowledgements(
    moto: MotoServer, tmp_path: Path
) -> None:
    """The S3 API stops answering (its process stopped: connections open, no reply) while
    parts rotate: /feedback, which waits for its line to reach the local part file, is still
    acknowledged; when S3 answers again every line is uploaded once."""
    model = save_tiny_model(tmp_path / "model")
    settings = _settings(tmp_path / "home")
    client = _create_bucket(moto.url)
    assert moto.proc is not None
    with _endpoint(settings, model) as (base, _):
        moto.proc.send_signal(signal.SIGSTOP)
        try:
            acked, codes = _acknowledged_requests(base, 15, "hung")
        finally:
            moto.proc.send_signal(signal.SIGCONT)
        assert all(code < 500 for code in codes), Counter(codes)
        assert len(acked) == 30
        assert wait_until(lambda: set(_ids_in_s3(client)) >= acked, 60), "not uploaded"
    every = _ids_in_s3(client)
    assert set(every) == acked and max(every.values()) == 1
