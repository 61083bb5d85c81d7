"""Stage logs in the Prefect UI: what ``logging.getLogger("citeops...")`` says during a flow
run is also sent to that run's log.

Prefect's own switch for this, ``PREFECT_LOGGING_EXTRA_LOGGERS=citeops``, only takes
effect if it is set before ``prefect`` is imported (the stack's worker sets it for the
flow runs it starts); :func:`stage_logs` does the same for the duration of a flow run
however the run was started (a worker of any kind, ``flow()`` in a test or the CLI).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

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
