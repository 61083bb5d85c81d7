"""The S3 API stopped while ``citeops ingest`` reads a log root on S3.

A moto_server subprocess of the test's own (not the session's) is the S3 API; at the
named point (ingest opens its second object) it is killed. The command fails with one line
(exit 2) within botocore's bounded retries; nothing of the object that could not be read
is committed. Once S3 is back (same port, the same objects: moto keeps them in memory, so
the test puts them again, byte for byte) the same command ingests what was left, and every
line is in the store exactly once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from citeops.configs.settings import load_settings
from tests.harness import run_citeops
from tests.ingest_support import feedback_line
from tests.servers import RestartableServer, program

pytestmark = pytest.mark.integration
BUCKET = "citeops-faults"
PREFIX = "prod/logs"


class MotoServer(RestartableServer):
    """A moto S3 API that a test can kill and start again on the same port."""

    def start(self) -> None:
        argv = [program("moto_server", sys.executable), "-H", "127.0.0.1", "-p", str(self.port)]
        self.launch(argv, "/", timeout=30)


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = MotoServer()
    server.start()
    monkeypatch.setenv("CITEOPS_S3__ENDPOINT_URL", server.url)
    try:
        yield server
    finally:
        server.kill()


def _objects() -> dict[str, bytes]:
    """Three feedback parts of 20 distinct lines each (60 lines in all)."""
    parts: dict[str, bytes] = {}
    for part in range(3):
        lines = [feedback_line(claim=f"claim {part}-{i}") for i in range(20)]
        body = "\n".join(json.dumps(line) for line in lines) + "\n"
        parts[f"{PREFIX}/feedback/date=2026-01-05/part-{part}.jsonl"] = body.encode()
    return parts


def _put_all(url: str) -> None:
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    for key, body in _objects().items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)


def test_s3_stopped_during_ingest_fails_in_one_line_and_the_rerun_is_exact(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from citeops.tasks.ingest import read as read_module
    from citeops.tasks.store.queries import feedback_counts

    _put_all(moto.url)
    source = ["ingest", "--source", f"s3://{BUCKET}/{PREFIX}", "--json"]
    real_open = read_module.open_object
    opened: list[str] = []

    def open_then_s3_dies(settings: Any, obj: Any) -> Any:
        opened.append(obj.uri)
        if len(opened) == 2:
            moto.kill()
        return real_open(settings, obj)

    with monkeypatch.context() as fault:
        fault.setattr(read_module, "open_object", open_then_s3_dies)
        code, out, err = run_citeops(source, capsys)
    assert len(opened) >= 2, opened
    assert code == 2, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot read" in errors[0], err
    assert "Traceback" not in err
    settings = load_settings()
    before = feedback_counts(settings, None)["accepted"]
    assert before in (0, 20), before  # at most the one object read before the kill

    moto.start()
    _put_all(moto.url)
    code, out, err = run_citeops(source, capsys)
    assert code == 0, (out, err)
    assert feedback_counts(settings, None)["accepted"] == 60  # each line once
    code, out, err = run_citeops(source, capsys)
    assert code == 0 and json.loads(out)["objects"] == 0  # nothing left, nothing twice
