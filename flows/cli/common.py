"""Shared plumbing for CLI commands: settings from options, clear one-line errors, JSON out."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from citeops.configs.settings import Settings, SettingsError, load_settings
from citeops.tasks.errors import CiteopsError


def settings_from(**overrides: Any) -> Settings:
    """Settings with CLI overrides applied (``None`` means "not given")."""
    return load_settings(**overrides)


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))


def info(message: str) -> None:
    """Progress and human-readable notes go to stderr so `--json` stdout stays parseable."""
    typer.echo(message, err=True)


def run_cli(app: typer.Typer, argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
    except (SettingsError, CiteopsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.Exit as done:
        return int(done.exit_code or 0)
    except Exception as error:  # click usage errors carry their own exit codes
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return error.exit_code
        raise
    return 0
