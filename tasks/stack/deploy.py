"""Deployments from prefect.yaml: work pools first, then `prefect deploy --all`.

prefect.yaml reads pool names and schedules from ``{{ $CITEOPS_DEPLOY_* }}`` variables,
which :func:`deploy_env` fills from the settings, so the same file serves every profile.
"""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

import httpx

from citeops.tasks.redact import redact_url
from citeops.tasks.stack.errors import StackError
from citeops.tasks.stack.processes import log_path, tail
from citeops.tasks.stack.services import base_env, bin_path, project_dir

if TYPE_CHECKING:
    from pathlib import Path

    from citeops.configs.settings import Settings

DEPLOY_LOG = "deploy"


def deploy_env(settings: Settings) -> dict[str, str]:
    """The environment `prefect deploy` resolves prefect.yaml's placeholders from."""
    env = base_env(settings)
    env["CITEOPS_DEPLOY_WORK_POOL"] = settings.stack.work_pool
    env["CITEOPS_DEPLOY_TRAIN_WORK_POOL"] = settings.stack.train_work_pool
    env["CITEOPS_DEPLOY_TRAIN_CRON"] = settings.trigger.quarterly_cron
    env["CITEOPS_DEPLOY_MONITOR_CRON"] = settings.stack.monitor_cron
    env["CITEOPS_DEPLOY_PROJECT_DIR"] = str(project_dir())
    return env


def work_pools(settings: Settings) -> list[str]:
    return list(dict.fromkeys([settings.stack.work_pool, settings.stack.train_work_pool]))


def ensure_work_pools(settings: Settings) -> list[str]:
    """Create the ``process`` work pools the deployments use when they do not exist yet.
    Returns the names of the pools created."""
    from prefect.workers.process import ProcessWorker

    api = str(settings.stack.prefect_api_url).rstrip("/")
    created = []
    try:
        for pool in work_pools(settings):
            if httpx.get(f"{api}/work_pools/{pool}", timeout=10).status_code == 200:
                continue
            payload = {
                "name": pool,
                "type": "process",
                "description": "citeops: flow runs as local processes",
                "base_job_template": ProcessWorker.get_default_base_job_template(),
            }
            response = httpx.post(f"{api}/work_pools/", json=payload, timeout=10)
            if response.status_code not in (200, 201, 409):
                raise StackError(f"work pool {pool!r} cannot be created: {response.text[:200]}")
            created.append(pool)
    except httpx.HTTPError as error:
        raise StackError(
            f"the Prefect API at {api} does not answer ({type(error).__name__}); "
            "start it with `citeops up --only prefect-server` or fix stack.prefect_api_url"
        ) from None
    return created


def deploy_flows(settings: Settings, timeout: float = 300.0) -> Path:
    """Create or update every deployment in prefect.yaml on the configured Prefect API.
    Returns the log of the `prefect deploy` run.

    Raises:
        StackError: the deploy command failed (the message quotes its log).
    """
    state_dir = settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    ensure_work_pools(settings)
    log = log_path(state_dir, DEPLOY_LOG)
    argv = [bin_path("prefect"), "deploy", "--all", "--no-prompt", "--prefect-file", "prefect.yaml"]
    started = time.monotonic()
    with log.open("ab") as out:
        try:
            result = subprocess.run(
                argv,
                env=deploy_env(settings),
                cwd=project_dir(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"`prefect deploy` took over {timeout:.0f} s; see {log}") from None
    if result.returncode != 0:
        last = redact_url(tail(log, 10))
        raise StackError(f"`prefect deploy` failed (exit {result.returncode}); see {log}:\n{last}")
    with log.open("a") as out:
        out.write(f"deployed in {time.monotonic() - started:.1f} s\n")
    return log
