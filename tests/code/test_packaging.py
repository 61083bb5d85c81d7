"""The distribution installs one namespace, ``citeops.*``, mapped from the top-level folders."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPED = ("configs", "flows", "serving", "tasks", "benchmarks")


def declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def folder_packages() -> set[str]:
    """Every folder under a mapped top-level folder that holds Python code or package data."""
    found = set()
    for top in MAPPED:
        if not (ROOT / top).is_dir():
            continue
        for init in (ROOT / top).rglob("__init__.py"):
            found.add("citeops." + ".".join(init.parent.relative_to(ROOT).parts))
    return found


def test_every_package_folder_is_declared() -> None:
    missing = folder_packages() - declared_packages()
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_installed_code_imports_only_the_namespace() -> None:
    bare = subprocess.run(
        ["git", "grep", "-nE", r"^\s*(from|import) (tasks|configs|flows|serving|benchmarks)\b"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bare.stdout == "", f"imports outside the citeops namespace:\n{bare.stdout}"


def test_wheel_holds_only_the_citeops_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation"]
        + ["-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("citeops-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"citeops", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "citeops/configs/profiles/local.yaml" in names
    assert "citeops/tasks/ingest/suites/feedback.yaml" in names
    assert "citeops/tasks/data/SHA256SUMS" in names
    migrations = ROOT / "tasks" / "store" / "migrations"
    shipped = {f"citeops/{p.relative_to(ROOT).as_posix()}" for p in migrations.rglob("*.py")}
    assert "citeops/tasks/store/migrations/env.py" in shipped <= set(names)
