"""Shared plumbing for CLI commands: settings from options, clear one-line errors, JSON out."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from citeops.configs.settings import Settings, SettingsError, load_settings
from citeops.tasks.errors import CiteopsError
from citeops.tasks.tracking import is_failed_request


def settings_from(**overrides: Any) -> Settings:
    """Settings with CLI overrides applied (``None`` means "not given"); the command is
    an entry point, so MLflow's process default is pointed at their store."""
    from citeops.flows.tracking import use_mlflow

    return use_mlflow(load_settings(**overrides))


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=False, default=str))


def info(message: str) -> None:
    """Progress and human-readable notes go to stderr so `--json` stdout stays parseable."""
    typer.echo(message, err=True)


@contextmanager
def stage_progress(
    level: int = logging.INFO, name: str = "citeops", fmt: str = "%(asctime)s %(message)s"
) -> Iterator[None]:
    """Show the stage logger ``name``'s records (default: every ``citeops.*`` stage) on
    stderr, formatted by ``fmt``, while the block runs."""
    logger = logging.getLogger(name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt, "%H:%M:%S"))
    previous, propagate = logger.level, logger.propagate
    logger.propagate = False  # Prefect's console handler on the root would print them twice
    logger.addHandler(handler)
    if previous == logging.NOTSET or previous > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        logger.propagate = propagate


class _NoRefusalTracebacks(logging.Filter):
    """Drop the traceback of a log record about a :class:`CiteopsError` (a refusal or a
    user-facing problem: its message says it all) or about a tracking server that did not
    answer (the command reports it in one line); keep the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and (isinstance(error, CiteopsError) or is_failed_request(error)):
            record.exc_info = None
            record.exc_text = None
        return True


MLFLOW_STORE_LOGGER = "mlflow.store.db.utils"


@contextmanager
def quiet_refusals() -> Iterator[None]:
    """Prefect logs a failed flow or task run with its traceback; for a gate refusal or
    another :class:`CiteopsError` the CLI shows the one-line reason instead. MLflow's
    SQL store logs a database error with its traceback and SQL parameters before raising
    it again: the raised error is what the command reports (one line), so that log is off."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    quiet = _NoRefusalTracebacks()
    for logger in loggers:
        logger.addFilter(quiet)
    store_log = logging.getLogger(MLFLOW_STORE_LOGGER)
    level = store_log.level
    store_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        store_log.setLevel(level)
        for logger in loggers:
            logger.removeFilter(quiet)


PROG_NAME = "citeops"


def run_cli(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run the CLI ``app`` on ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    Nothing a user can get wrong ends in a Python traceback:

    - a usage mistake (unknown command or option, missing option, a bare command group)
      prints Typer's usual short usage error, or the group's help, on stderr: status 2;
    - a :class:`SettingsError` or :class:`CiteopsError` prints one ``error: ...`` line: 2;
    - Ctrl-C: 130.

    Typer bundles its own copy of click, so its usage errors are not ``click.ClickException``;
    running Typer in standalone mode lets Typer format its own errors. Any other exception
    is a bug and propagates with its traceback.
    """
    try:
        app(args=argv, prog_name=PROG_NAME, standalone_mode=True)
    except SystemExit as done:
        return _exit_status(done.code)
    except (SettingsError, CiteopsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        import click

        if isinstance(error, click.ClickException):  # raised by a library that uses click
            error.show()
            return error.exit_code
        raise
    return 0


def _exit_status(code: object) -> int:
    """The process status for ``SystemExit(code)``: ``None`` is 0, a message is 1 (printed)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
