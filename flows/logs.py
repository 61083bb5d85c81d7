"""Where logs go. Two entry-point set-ups, nothing at import time:

- :func:`stage_logs`: what ``logging.getLogger("citeops...")`` says during a flow run is also
  sent to that run's log in the Prefect UI;
- :func:`quiet_terminal`: a command's terminal shows our progress lines only, and the full
  log of the run (every library, warnings, progress bars, child processes) goes to a file
  (:func:`run_log_path`).

Prefect's own switch for this, ``PREFECT_LOGGING_EXTRA_LOGGERS=citeops``, only takes
effect if it is set before ``prefect`` is imported (the stack's worker sets it for the
flow runs it starts); :func:`stage_logs` does the same for the duration of a flow run
however the run was started (a worker of any kind, ``flow()`` in a test or the CLI).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path
from typing import TextIO

STAGE_LOGGER = "citeops"


@contextmanager
def stage_logs(level: int = logging.INFO) -> Iterator[None]:
    """Attach Prefect's run-log handlers (those of its ``prefect.extra`` logger, as the
    extra-loggers setting does) to the ``citeops`` logger, at ``level`` or more verbose,
    and detach them on exit. Use inside a flow body."""
    logger = logging.getLogger(STAGE_LOGGER)
    handlers = [h for h in logging.getLogger("prefect.extra").handlers if h not in logger.handlers]
    previous_level = logger.level
    if previous_level == logging.NOTSET or previous_level > level:
        logger.setLevel(level)
    for handler in handlers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(previous_level)


# ---- a quiet terminal: our lines on the terminal, everything else in a run log ---------------
RUN_LOG_DIR = "run-logs"  # under the home; <home>/logs holds the query and feedback logs
# progress bars would only fill the run log with carriage returns; the child processes
# (the serving endpoint, Prefect's local API server) inherit these too
QUIET_ENVIRONMENT = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
# one INFO line per HTTP request: the simulated users' thousands would bury the rest
PER_REQUEST_LOGGERS = ("httpx", "httpcore")
FILE_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"


def run_log_path(home: Path, command: str, now: datetime | None = None) -> Path:
    """Where the full log of one ``command`` run goes: ``<home>/run-logs/<command>-<time>.log``."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return home / RUN_LOG_DIR / f"{command}-{stamp}.log"


@contextmanager
def quiet_terminal(
    log_path: Path, show: str = STAGE_LOGGER, level: int = logging.INFO, until_exit: bool = False
) -> Iterator[None]:
    """While the block runs, the terminal shows the records of the ``show`` logger tree at
    ``level`` or above (our progress lines, as ``HH:MM:SS message``) and nothing else; all of
    it, with every other library's logs (Prefect's task states, Hugging Face load reports and
    tokenizer warnings, MLflow), Python warnings, progress bars, anything written to stdout or
    stderr and the output of child processes started meanwhile, goes to ``log_path``
    (appended, created with its folder).

    After the block the standard streams are as before, so results and errors print as
    usual; so are logging, warnings and the environment, unless ``until_exit``: then the
    logs keep their routes until the process ends (a command's entry point, whose libraries
    still log when the interpreter exits: Prefect stopping its temporary API server).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal, owned = _terminal_stream(sys.stderr)
    routes = ExitStack()
    if owned:
        routes.callback(terminal.close)
    if until_exit:  # registered now, so it runs after the exit hooks of what the block starts
        atexit.register(routes.close)
    try:
        routes.enter_context(_environment(QUIET_ENVIRONMENT))
        _configure_library_logging()
        to_terminal = _terminal_handler(terminal, show, level)
        routes.enter_context(_logging_to(_file_handler(log_path), to_terminal, show, level))
        with _output_to(log_path):
            yield
    finally:
        if not until_exit:
            routes.close()


def _terminal_stream(stream: TextIO) -> tuple[TextIO, bool]:
    """A stream that keeps writing where ``stream`` writes now, even once its file
    descriptor is pointed elsewhere (a duplicate of it, owned by the caller), or ``stream``
    itself when it has no descriptor (a test's capture)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return stream, False
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return open(os.dup(fd), "w", buffering=1, encoding=encoding, errors="replace"), True  # noqa: SIM115


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` where the user has not set them, removed afterwards."""
    added = {name: value for name, value in values.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _configure_library_logging() -> None:
    """Let Prefect, transformers and MLflow set up their logging now (each installs its own
    console handler when first imported), so that :func:`_logging_to` can redirect it."""
    import prefect.main  # noqa: F401
    import transformers.utils.logging  # noqa: F401

    import mlflow  # noqa: F401


def _file_handler(log_path: Path) -> logging.Handler:
    from prefect.logging.formatters import PrefectFormatter

    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(
        PrefectFormatter(
            format=FILE_FORMAT,
            flow_run_fmt=FILE_FORMAT.replace("%(name)s", "Flow run %(flow_run_name)r"),
            task_run_fmt=FILE_FORMAT.replace("%(name)s", "Task run %(task_run_name)r"),
            datefmt="%H:%M:%S",
        )
    )
    return handler


class OneLineFormatter(logging.Formatter):
    """``HH:MM:SS message`` with a multi-line message (a gate's refusal, an error's detail)
    joined into one line, so that every terminal line is one timestamped record."""

    def format(self, record: logging.LogRecord) -> str:
        lines = [line.strip() for line in super().format(record).splitlines()]
        return "; ".join(line for line in lines if line)


def _terminal_handler(terminal: TextIO, show: str, level: int) -> logging.Handler:
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.setLevel(level)
    handler.addFilter(lambda record: record.name == show or record.name.startswith(f"{show}."))
    return handler


@contextmanager
def _logging_to(
    to_file: logging.Handler, to_terminal: logging.Handler, show: str, level: int
) -> Iterator[None]:
    """The root logger writes to ``to_file`` and ``to_terminal`` only; every logger with a
    console handler of its own (Prefect, transformers, MLflow, uvicorn) hands its records
    to the root instead; warnings become ``py.warnings`` records; ``show`` logs at ``level``."""
    root = logging.getLogger()
    touched = [root, logging.getLogger(show), *_with_console_handlers()]
    touched += [logging.getLogger(name) for name in PER_REQUEST_LOGGERS]
    saved = [(lg, list(lg.handlers), lg.propagate, lg.level) for lg in touched]
    capturing = logging._warnings_showwarning is not None  # type: ignore[attr-defined]
    for logger in touched[2:]:
        logger.handlers = [h for h in logger.handlers if not _is_console(h)]
        logger.propagate = True
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    root.handlers = [to_file, to_terminal]
    root.setLevel(logging.INFO)
    _at_most(logging.getLogger(show), level)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(capturing)
        for logger, handlers, propagate, previous in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(previous)
        to_file.close()


def _with_console_handlers() -> list[logging.Logger]:
    loggers = logging.getLogger().manager.loggerDict.values()
    return [
        lg
        for lg in loggers
        if isinstance(lg, logging.Logger) and any(_is_console(h) for h in lg.handlers)
    ]


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def _at_most(logger: logging.Logger, level: int) -> None:
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)


@contextmanager
def _output_to(log_path: Path) -> Iterator[None]:
    """Standard output and error, as Python streams and as file descriptors 1 and 2 (which
    child processes inherit), append to ``log_path`` while the block runs."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with log_path.open("a", buffering=1, encoding="utf-8") as log:
        saved = [(fd, os.dup(fd)) for fd in (1, 2) if _is_open(fd)]
        for fd, _ in saved:
            os.dup2(log.fileno(), fd)
        try:
            with redirect_stdout(log), redirect_stderr(log):
                yield
        finally:
            for stream in (sys.stdout, sys.stderr, log):
                stream.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
