"""requirements.lock (from `make lock`) agrees with pyproject.toml and keeps torch's CPU build."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
# nvidia-ml-py (NVML, GPU gauges on /metrics) is pure Python and imports on any machine
CUDA_ONLY = re.compile(r"^(nvidia-(?!ml-py$).*|triton|cuda-.*)$")


def _locked() -> dict[str, tuple[str, int]]:
    """``{canonical name: (version, number of hashes)}`` for every entry of the lock."""
    entries: dict[str, tuple[str, int]] = {}
    name = ""
    for line in LOCK.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;\\]+)", line)
        if pin:
            name = canonicalize_name(pin.group(1))
            entries[name] = (pin.group(3), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = entries[name]
            entries[name] = (version, hashes + 1)
    return entries


def _pins() -> dict[str, str]:
    """``{canonical name: version}`` of the ``==`` pins in pyproject (dependencies and test)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pins = {}
    for text in requirements:
        requirement = Requirement(text)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{text}: direct dependencies are pinned with =="
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


@pytest.fixture(scope="module")
def locked() -> dict[str, tuple[str, int]]:
    return _locked()


def test_every_direct_pin_is_locked_at_the_same_version(locked: dict) -> None:
    stale = {
        name: (version, locked.get(name, ("missing", 0))[0])
        for name, version in _pins().items()
        if name != "torch" and locked.get(name, ("", 0))[0] != version
    }
    assert not stale, f"run `make lock`: pyproject pin vs lock {stale}"


def test_torch_and_cuda_only_packages_stay_out_of_the_lock(locked: dict) -> None:
    assert "torch" not in locked  # pip installs the CPU build first (Makefile)
    assert not [name for name in locked if CUDA_ONLY.match(name)]


def test_every_locked_package_has_a_hash(locked: dict) -> None:
    assert len(locked) > 150
    assert [name for name, (_, hashes) in locked.items() if hashes == 0] == []


def test_makefile_installs_the_torch_version_pyproject_pins() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f"torch=={_pins()['torch']}" in makefile
