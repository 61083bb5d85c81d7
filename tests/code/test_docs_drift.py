"""The generated parts of the docs match the code: the CLI reference (docs/cli.md) the Typer
app, the settings reference (docs/configuration.md) the settings' schema."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from citeops.configs.settings import Settings
from citeops.flows.cli import app, main
from citeops.flows.cli.docs import (
    DOCS_DIR,
    FIX_COMMAND,
    REGIONS,
    DocsOutOfDate,
    cli_reference,
    regenerate,
    settings_reference,
    stale_docs,
)


@pytest.mark.parametrize("doc", sorted({r.doc for r in REGIONS}))
def test_committed_docs_match_the_generators(doc: str) -> None:
    stale = [d for d in stale_docs(app, DOCS_DIR) if d == doc]
    assert not stale, f"docs/{doc} differs from what the code generates: run {FIX_COMMAND}"


def _leaf_settings(model: type[BaseModel], path: str = "") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += _leaf_settings(kind, f"{path}{name}.")
        else:
            names.append(f"{path}{name}")
    return names


def test_the_settings_reference_lists_every_setting_with_its_variable() -> None:
    text = settings_reference()
    for name in _leaf_settings(Settings):
        variable = "CITEOPS_" + name.upper().replace(".", "__")
        assert f"| `{name}` |" in text and f"`{variable}`" in text, name
    assert "`promote.endpoints`" in text and "`serve.endpoints`" not in text


def test_the_cli_reference_lists_every_command_and_option() -> None:
    text = cli_reference(app)
    for heading in ("citeops docs", "citeops feedback exclude", "citeops bench serve"):
        assert f"### `{heading}`" in text
    assert "| `--write` / `--check` | flag | off |" in text


def test_prose_outside_the_markers_is_kept_and_a_missing_region_is_one_clear_error() -> None:
    region = REGIONS[0]
    text = f"# Title\n\nprose before\n\n{region.begin}\nold\n{region.end}\n\nprose after\n"
    new = regenerate(text, region, app)
    assert new.startswith("# Title\n\nprose before\n\n") and new.endswith("\n\nprose after\n")
    assert "\nold\n" not in new and "### `citeops train`" in new
    assert regenerate(new, region, app) == new  # stable
    with pytest.raises(DocsOutOfDate, match="no generated region 'cli-reference'"):
        regenerate("# Title\n", region, app)


def test_the_docs_command_checks_then_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for doc in {r.doc for r in REGIONS}:
        shutil.copy(DOCS_DIR / doc, tmp_path / doc)
    cli = tmp_path / "cli.md"
    cli.write_text(cli.read_text().replace("### `citeops train`", "### `citeops trian`"))
    with pytest.raises(SystemExit) as done:
        main(["docs", "--docs-dir", str(tmp_path)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "docs/cli.md" in err and FIX_COMMAND in err and "configuration.md" not in err
    with pytest.raises(SystemExit) as done:
        main(["docs", "--write", "--docs-dir", str(tmp_path)])
    assert done.value.code == 0
    assert cli.read_text() == (DOCS_DIR / "cli.md").read_text()
