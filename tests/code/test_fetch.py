from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from citeops.flows.cli import main
from citeops.tasks.data.fetch import expected_sums, fetch_datasets
from citeops.tasks.errors import ChecksumError


def _source(tmp_path: Path) -> tuple[str, dict[str, str]]:
    src = tmp_path / "mirror"
    (src / "scifact").mkdir(parents=True)
    files = {"scifact/a.jsonl": b'{"x": 1}\n', "scifact/b.jsonl": b'{"y": 2}\n'}
    for name, body in files.items():
        (src / name).write_bytes(body)
    sums = {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}
    return src.as_uri(), sums


def test_project_sums_cover_every_benchmark_file() -> None:
    names = set(expected_sums())
    for dataset in ("scifact", "citint"):
        for part in ("corpus", "claims_train", "claims_dev", "claims_test"):
            assert f"{dataset}/{part}.jsonl" in names


def test_fetch_file_urls_verifies_and_is_idempotent(tmp_path: Path) -> None:
    url, sums = _source(tmp_path)
    dest = tmp_path / "dest"
    first = fetch_datasets(url, dest, sums)
    assert all(r.downloaded for r in first)
    assert (dest / "scifact/a.jsonl").read_bytes() == b'{"x": 1}\n'
    second = fetch_datasets(url, dest, sums)
    assert not any(r.downloaded for r in second)


def test_bad_checksum_leaves_nothing_behind(tmp_path: Path) -> None:
    url, sums = _source(tmp_path)
    sums["scifact/b.jsonl"] = "0" * 64
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match="scifact/b.jsonl: SHA-256 mismatch"):
        fetch_datasets(url, dest, sums)
    left = sorted(p.name for p in (dest / "scifact").iterdir())
    assert left == ["a.jsonl"]  # verified file kept, no partial or temp file for b


def test_cli_fetch_from_shared_mirror(tmp_path: Path, data_dir: Path) -> None:
    dest = tmp_path / "fetched"
    with pytest.raises(SystemExit) as done:
        main(["data", "fetch", "--dest", str(dest), "--base-url", data_dir.as_uri()])
    assert done.value.code == 0
    assert (dest / "citint" / "corpus.jsonl").stat().st_size == (
        data_dir / "citint" / "corpus.jsonl"
    ).stat().st_size


def test_cli_fetch_mismatch_exits_2(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(data_dir, mirror)
    (mirror / "scifact" / "claims_dev.jsonl").write_text("tampered\n")
    dest = tmp_path / "d"
    with pytest.raises(SystemExit) as done:
        main(["data", "fetch", "--dest", str(dest), "--base-url", mirror.as_uri()])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "error: scifact/claims_dev.jsonl: SHA-256 mismatch" in err
    assert not (dest / "scifact" / "claims_dev.jsonl").exists()
