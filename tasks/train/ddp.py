"""Lightning DDP across several processes on one machine, started by us, not re-run.

Lightning's own DDP launcher re-runs the command line (``sys.argv``) once per extra rank,
so every rank would redo what the command does around the fit: a second MLflow run, a
second registration, and for a Prefect flow a second flow run. Instead, when
``train.strategy`` is ``ddp`` with more than one device, :func:`ddp_ranks` starts the extra
ranks itself as ``python -m citeops.tasks.train.ddp_worker`` workers that only fit, and makes this
process rank 0 of a torchelastic-style environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` ...), which Lightning detects and joins without launching anything. Rank 0
keeps everything else: the MLflow run, the best weights, the registration.

Each rank trains on its own shard of the length-bucketed batches
(:class:`~citeops.tasks.train.batching.BucketBatchSampler`); the gradients are averaged
by DDP, so the effective batch is ``train.batch_size`` x the number of ranks.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from citeops.tasks.train.training_set import TrainingSet

ELASTIC_ENV = (
    "RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
)  # fmt: skip
WORKER_TIMEOUT_SECONDS = 120.0  # after rank 0's fit ends, for a worker to exit


class DistributedTrainingError(CiteopsError):
    """A DDP worker process failed."""


def visible_gpus() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def world_size(settings: Settings) -> int:
    """How many processes one fit runs in: ``train.devices`` under a ``ddp`` strategy
    that we launch (CPU processes, or GPUs of this node; ``auto``: every visible GPU
    when the accelerator may be one), else 1."""
    cfg = settings.train
    if not str(cfg.strategy).startswith("ddp"):
        return 1
    if not isinstance(cfg.devices, int):
        return max(1, visible_gpus()) if cfg.accelerator in ("auto", "gpu", "cuda") else 1
    return max(1, cfg.devices)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank_env(rank: int, size: int, port: int) -> dict[str, str]:
    """The torchelastic variables of ``rank`` in a one-node world of ``size``."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "GROUP_RANK": "0",
        "WORLD_SIZE": str(size),
        "LOCAL_WORLD_SIZE": str(size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_RUN_ID": f"citeops-{port}",
    }


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _start_worker(job: Path, rank: int, size: int, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, **rank_env(rank, size, port), "CITEOPS_DDP_RANK": str(rank)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "citeops.tasks.train.ddp_worker", str(job)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def ddp_ranks(settings: Settings, data: TrainingSet) -> Iterator[int]:
    """Within the block this process is rank 0 of ``world_size(settings)`` ranks (yields
    that size; 1: nothing is started). The workers are started on entry, and on exit
    waited for (or, after an error in rank 0, stopped).

    Raises:
        DistributedTrainingError: a worker exited with an error (its output is named).
    """
    size = world_size(settings)
    if size == 1:
        yield 1
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="citeops-ddp-") as tmp:
        job = Path(tmp) / "job.pickle"
        job.write_bytes(pickle.dumps((settings, data)))
        logs = [Path(tmp) / f"rank{rank}.log" for rank in range(1, size)]
        workers = [
            _start_worker(job, rank, size, port, log)
            for rank, log in zip(range(1, size), logs, strict=True)
        ]
        ok = False
        try:
            with _environment(rank_env(0, size, port)):
                yield size
            ok = True
        finally:
            _leave_process_group()
            _finish(workers, logs, ok)


def _leave_process_group() -> None:
    """Lightning leaves the process group up after fitting; a long-lived process (a
    Prefect worker, a test session) must not stay rank 0 of a world that is gone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _finish(workers: list[subprocess.Popen], logs: list[Path], ok: bool) -> None:
    for worker in workers:
        if not ok:
            worker.kill()
        try:
            worker.wait(timeout=WORKER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    failed = [(w, log) for w, log in zip(workers, logs, strict=True) if w.returncode != 0]
    if ok and failed:
        worker, log = failed[0]
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise DistributedTrainingError(
            f"a DDP worker exited with status {worker.returncode}: {tail[0]}"
        )
