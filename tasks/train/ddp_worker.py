"""A DDP worker process (rank > 0), started by :func:`citeops.tasks.train.ddp.ddp_ranks`
with the torchelastic variables of its rank: ``python -m citeops.tasks.train.ddp_worker
JOB`` where JOB is the pickled ``(settings, training set)`` of rank 0's fit."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from citeops.tasks.train.fit import build_fit


def run_worker(job: Path) -> None:
    """Build the same fit as rank 0 and fit; nothing is logged or saved (rank 0 does)."""

    settings, data = pickle.loads(job.read_bytes())
    setup = build_fit(settings, data, progress=False)
    setup.trainer.fit(setup.module, datamodule=setup.datamodule)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]))
