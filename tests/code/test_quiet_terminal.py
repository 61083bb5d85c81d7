"""`citeops demo`'s terminal: our progress lines only; everything else in the run log."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from citeops.flows.logs import quiet_terminal, run_log_path


@contextmanager
def prefect_at_info() -> Iterator[None]:
    """The tests run Prefect at WARNING (conftest); the demo runs it at its default, INFO.
    Enter after Prefect has set up its logging (which sets the level)."""
    logger = logging.getLogger("prefect")
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous)


def make_noise() -> None:
    """What a demo run writes besides our lines, each from the library that writes it."""
    import mlflow.pyfunc
    from prefect import flow, task
    from tqdm import tqdm
    from transformers.utils import logging as hf_logging

    @task
    def add_one(x: int) -> int:
        return x + 1

    @flow
    def tiny_flow() -> int:
        return add_one(1)

    assert tiny_flow() == 2  # Prefect logs "Finished in state Completed()" per task and flow

    class NoHints(mlflow.pyfunc.PythonModel):  # MLflow: "Add type hints ..." (UserWarning),
        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
            return model_input  # once per process: a library warning of our own as well

    warnings.warn("a library's UserWarning", UserWarning, stacklevel=1)

    hf_logging.get_logger("transformers.modeling_utils").warning("BertModel LOAD REPORT from: x")
    hf_logging.get_logger("transformers.tokenization_utils_base").warning(
        "Token indices sequence length is longer than the specified maximum sequence length"
    )
    for _ in tqdm(range(3), desc="a bar left on", disable=False):  # explicitly on: logged
        pass
    for _ in tqdm(range(3), desc="a default bar"):  # TQDM_DISABLE under quiet_terminal
        pass
    print("a print to stdout")
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child stderr\\n')"])


def test_quiet_terminal_shows_our_lines_and_logs_everything_else(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], prefect_harness: None
) -> None:
    log_path = run_log_path(tmp_path / "home", "demo")
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # seen before in the session or not
        with quiet_terminal(log_path), prefect_at_info():
            logging.getLogger("citeops.demo").info("simulated users: 120 pairs")
            make_noise()
            logging.getLogger("citeops.tasks.train.fit").info("epoch 1 of 1 done")
            logging.getLogger("citeops.demo").info("refused:\n  latency p95 +40 %\n")
    terminal = capfd.readouterr()
    log = log_path.read_text()

    assert log_path.parent == tmp_path / "home" / "run-logs"
    assert terminal.out == ""
    lines = terminal.err.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "simulated users: 120 pairs",
        "epoch 1 of 1 done",
        "refused:; latency p95 +40 %",  # a multi-line message is one terminal line
    ], terminal.err
    for noise in (
        "Finished in state Completed()",
        "LOAD REPORT",
        "Token indices sequence length",
        "a bar left on",
        "a print to stdout",
        "child stderr",
        "simulated users: 120 pairs",  # our lines are in the full log too
    ):
        assert noise in log, noise
    assert "Task run 'add_one" in log  # Prefect's records say which run
    # a library's warning never reaches the terminal (whether it reaches the log depends on
    # what earlier tests did to the warnings machinery in this process)
    assert "UserWarning" not in terminal.err
    # never on the terminal; in the log only when tqdm was imported before TQDM_DISABLE
    # was set (tqdm reads its environment once, at import: earlier tests may import it)
    assert "a default bar" not in terminal.err


def test_quiet_terminal_leaves_logging_and_streams_as_they_were(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, sys.stdout, sys.stderr, warnings.showwarning)
    with quiet_terminal(tmp_path / "run.log"):
        pass
    after = (list(root.handlers), root.level, sys.stdout, sys.stderr, warnings.showwarning)
    assert after == before
    assert "TQDM_DISABLE" not in os.environ
    print("printed after the block")
    assert "printed after the block" in capfd.readouterr().out
    assert "after the block" not in (tmp_path / "run.log").read_text()
