"""Download the benchmark files and verify them against the SHA-256 sums kept in the project.

Every file is downloaded to a temporary name beside its destination, checked, and only then
renamed into place, so an interrupted or failed download never leaves a half-written file
that a later run would take for data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from citeops.tasks.errors import ChecksumError, DataFileError

SUMS_FILE = Path(__file__).with_name("SHA256SUMS")


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    downloaded: bool  # False when the file was already present with the right sum


def expected_sums(sums_file: Path = SUMS_FILE) -> dict[str, str]:
    """``{relative path: sha256}`` from a ``sha256sum``-format file."""
    sums: dict[str, str] = {}
    for line in sums_file.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> str:
    """Stream ``url`` into ``target``; returns the SHA-256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError) as error:
        raise DataFileError(f"{url}: download failed ({error})") from None
    return digest.hexdigest()


def fetch_file(base_url: str, name: str, sha256: str, dest: Path) -> FetchResult:
    """Fetch one file ``<base_url>/<name>`` into ``dest/<name>``, verified.

    Raises:
        ChecksumError: the downloaded bytes do not match ``sha256``; nothing is kept.
        DataFileError: the download failed; nothing is kept.
    """
    target = dest / name
    if target.is_file() and sha256_of(target) == sha256:
        return FetchResult(target, sha256, downloaded=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        actual = _download(f"{base_url.rstrip('/')}/{name}", tmp)
        if actual != sha256:
            raise ChecksumError(
                f"{name}: SHA-256 mismatch (expected {sha256}, got {actual}); "
                "the file was not saved. Check the source URL (CITEOPS_DATA_BASE_URL)."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return FetchResult(target, sha256, downloaded=True)


def fetch_datasets(
    base_url: str,
    dest: Path,
    sums: dict[str, str] | None = None,
    progress: Callable[[str, FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch every file named in the project's SHA-256 list into ``dest``.

    Stops at the first failure; files fetched before it stay (each one verified).
    """
    results = []
    for name, digest in (sums or expected_sums()).items():
        result = fetch_file(base_url, name, digest, Path(dest))
        results.append(result)
        if progress:
            progress(name, result)
    return results


def data_dir_is_empty(data_dir: Path) -> bool:
    return not Path(data_dir).is_dir() or not any(Path(data_dir).iterdir())
