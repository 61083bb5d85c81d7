"""`citeops demo`: the whole loop on one machine, as a story that can be checked.

With no champion yet, a first one is trained on SciFact and Citation-Integrity, gated
against the majority baseline on both test sets and promoted to a serving endpoint
started on a free local port. Simulated users then send Citation-Integrity pairs through
the real HTTP API (``/predict``, then ``/feedback`` with the gold label, a seeded share
flipped) until the feedback trigger fires; ``monitor`` ingests the logs, checks drift and
decides; ``retrain`` continues from the champion's weights on SciFact, Citation-Integrity
and the accepted feedback, validates against the champion, gates, and promotes
blue-green while simulated traffic keeps flowing. The endpoint stops at the end; the
store, MLflow and the logs stay. A second run finds the champion and the logged feedback
and goes on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    import httpx

    from citeops.configs.settings import Settings
    from citeops.tasks.data.multivers import Example

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
STATE_FILE = "demo.json"  # under <home>/state: how far the simulated users got


class DemoError(CiteopsError):
    """The demo cannot start or its endpoint failed."""


@dataclass(frozen=True)
class DemoBudget:
    """How much work the demo does (defaults: about 15 minutes on 2 CPU cores, MiniLM)."""

    # the first champion: every SciFact and Citation-Integrity training pair, the `local`
    # recipe (siamese head fitted on frozen features, then fine-tuned at 5e-5) for one
    # epoch at length 192, to fit the demo's minutes
    first_train: dict[str, Any] = field(
        default_factory=lambda: {"epochs": 1, "max_length": 192, "learning_rate": 5e-5}
    )
    # the retrain continues from the champion's weights (its head kept) on the same data
    # plus the accepted feedback for one more epoch: the local recipe's second epoch, whose
    # linearly decaying rate starts near half the peak (a restart at the full 5e-5 traded
    # Citation-Integrity for SciFact: BENCHMARKS.md ## demo)
    retrain: dict[str, Any] = field(
        default_factory=lambda: {"epochs": 1, "max_length": 192, "learning_rate": 2.5e-5}
    )
    # the gate judges on the whole test sets (SciFact 300, Citation-Integrity 606 pairs):
    # scoring them takes seconds, and a 300-pair subset's macro F1 moves by +-0.05
    evaluate_max_examples: int | None = None
    flip_share: float = 0.15
    feedback_rounds: int = 3
    bake_seconds: float = 20.0
    traffic_interval_seconds: float = 0.5
    user_clients: int = 8  # API keys the simulated users' feedback is spread over
    seed: int = 7
    # the gated challenger meets real traffic first: an A/B split of `online_share` of the
    # simulated users (sticky per user), concluded once `online_feedback` feedback items
    # judge the challenger (promote.online_min_feedback); `online` "none" swaps at once
    online: str = "ab"
    online_share: float = 0.5
    online_feedback: int = 40
    online_rounds: int = 4
    users: int = 64  # distinct simulated users (X-Client-Id): the A/B arm is per user


@dataclass
class Traffic:
    """Requests the simulated users sent and how many failed."""

    predictions: int = 0
    feedback: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def failure(self, what: str) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(what)


@dataclass
class DemoSummary:
    """What the demo did, for the terminal and ``--json``."""

    champion_before: str | None
    champion_after: str | None
    first_champion: dict[str, Any] | None
    decision: dict[str, Any]
    drift: dict[str, Any]
    retrain: dict[str, Any] | None
    traffic: Traffic
    endpoint: str
    wall_seconds: float = 0.0
    # the feedback-quality flags on this run's seeded flips: precision and recall
    flagging: dict[str, Any] | None = None
    where: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- the serving endpoint ---------------------------------------------------------------------
@contextmanager
def serving_endpoint(
    settings: Settings, port: int, progress: Progress, log_path: Path
) -> Iterator[str]:
    """``citeops serve`` in a child process on ``port``, its output appended to ``log_path``,
    stopped (SIGTERM) on exit."""
    import httpx

    env = dict(os.environ)
    env.update(
        {
            "CITEOPS_SERVE__PORT": str(port),
            "CITEOPS_SERVE__LOG_PART_MAX_SECONDS": "2",  # feedback reaches ingestion quickly
            "CITEOPS_HOME": str(settings.home),
            "CITEOPS_PROFILE": settings.profile,
        }
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-c", "from citeops.flows.cli import main; main()", "serve"]
    with log_path.open("ab") as out:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://{settings.serve.host}:{port}"
    progress(f"serving endpoint starting on {base}, the app at {base}/app (log: {log_path})")
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"the serving endpoint did not start; see {log_path}")
            time.sleep(0.5)
        yield base
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()


# ---- simulated users ----------------------------------------------------------------------------
def user_pairs(settings: Settings, seed: int) -> list[Example]:
    """Citation-Integrity train pairs in a seeded order (the other domain's traffic)."""
    from citeops.tasks.data.multivers import read_split, shuffled

    return shuffled(read_split(settings.data_dir, "citint", "train"), seed)


def user_label(example: Example, rng: random.Random, flip_share: float) -> str:
    """The gold label, or (with probability ``flip_share``) another one: noisy users (the
    same draw as ``citeops bench flagging`` makes)."""
    from citeops.tasks.feedback.measure import flip_label

    return flip_label(example.label_name, rng, flip_share)


def feedback_round_size(missing: int, flip_share: float) -> int:
    """Users to send so that ``missing`` trusted feedback items arrive in one round: the
    feedback-quality stage leaves flagged labels out of the trigger's count, and flags at
    most about twice the flipped share while its precision is at least 0.5 (at
    2026-12-04's precision 0.53 the demo's 120 users gave 96 trusted items and a second
    round)."""
    return math.ceil(missing / max(1.0 - 2.0 * flip_share, 0.5))


def ask_and_tell(
    client: httpx.Client,
    base: str,
    example: Example,
    label: str,
    traffic: Traffic,
    key: str | None = None,
    user: str | None = None,
) -> None:
    """One user: ``/predict`` (as ``user``: the ``X-Client-Id`` an A/B split keeps on one
    arm), then ``/feedback`` (with the app's API ``key`` for that user's client, when given)
    with the label they believe is right."""
    pair = {"claim": example.claim, "evidence": example.evidence}
    who = {"X-Client-Id": user} if user else None
    answer = client.post(f"{base}/predict", json=pair, headers=who)
    if answer.status_code != 200:
        traffic.failure(f"/predict {answer.status_code}")
        return
    traffic.predictions += 1
    body = answer.json()
    feedback = pair | {
        "request_id": body["request_id"],
        "prediction": body["label"],
        "user_label": label,
    }
    headers = {"Authorization": f"Bearer {key}"} if key else None
    sent = client.post(f"{base}/feedback", json=feedback, headers=headers)
    if sent.status_code != 202:
        traffic.failure(f"/feedback {sent.status_code}")
        return
    traffic.feedback += 1


def read_cursor(settings: Settings) -> int:
    path = settings.state_dir / STATE_FILE
    return int(json.loads(path.read_text()).get("next_pair", 0)) if path.is_file() else 0


def write_cursor(settings: Settings, value: int) -> None:
    path = settings.state_dir / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"next_pair": value}))


def send_feedback(
    settings: Settings,
    base: str,
    count: int,
    budget: DemoBudget,
    traffic: Traffic,
    seeded: list[Any] | None = None,
) -> None:
    """``count`` users from where the last run stopped (so feedback is never repeated);
    each label sent is appended to ``seeded`` with whether it was flipped on purpose."""
    import httpx

    from citeops.tasks.feedback.measure import SeededLabel

    pairs = user_pairs(settings, budget.seed)
    start = read_cursor(settings)
    rng = random.Random(f"{budget.seed}-{start}")
    keys = sorted(settings.feedback.client_keys()) or [None]
    with httpx.Client(timeout=60) as client:
        for offset in range(count):
            example = pairs[(start + offset) % len(pairs)]
            label = user_label(example, rng, budget.flip_share)
            key = keys[offset % len(keys)]  # users spread over the app's clients
            sent = traffic.feedback
            user = f"demo-user-{(start + offset) % budget.users}"
            ask_and_tell(client, base, example, label, traffic, key, user)
            if seeded is not None and traffic.feedback > sent:
                flip = label != example.label_name
                seeded.append(SeededLabel(example.claim, example.evidence, label, flip))
    write_cursor(settings, start + count)


@contextmanager
def background_traffic(
    settings: Settings, base: str, budget: DemoBudget, traffic: Traffic
) -> Iterator[None]:
    """Queries (no feedback) every ``traffic_interval_seconds`` while the block runs."""
    import httpx

    stop = threading.Event()
    pairs = user_pairs(settings, budget.seed + 1)

    def run() -> None:
        with httpx.Client(timeout=60) as client:
            i = 0
            while not stop.wait(budget.traffic_interval_seconds):
                example = pairs[i % len(pairs)]
                i += 1
                try:
                    answer = client.post(
                        f"{base}/predict",
                        json={"claim": example.claim, "evidence": example.evidence},
                    )
                except httpx.HTTPError as error:
                    traffic.failure(f"/predict {type(error).__name__}")
                    continue
                if answer.status_code == 200:
                    traffic.predictions += 1
                else:
                    traffic.failure(f"/predict {answer.status_code}")

    thread = threading.Thread(target=run, name="demo-traffic", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(120)


def demo_credentials(settings: Settings, budget: DemoBudget) -> Settings:
    """The demo's own admin token and the API keys of its simulated users' clients, when
    none are configured; set in this process's environment, which the endpoint and the
    flows inherit. Feedback is then authenticated (and rate-limited) per client, as in
    production."""
    import secrets

    from citeops.configs.settings import load_settings

    if settings.admin_secret() is None:
        os.environ["CITEOPS_ADMIN_TOKEN"] = secrets.token_urlsafe(32)
    if not settings.feedback.client_keys():
        os.environ["CITEOPS_FEEDBACK__API_KEYS"] = ",".join(
            f"demo-users-{i}:{secrets.token_urlsafe(24)}" for i in range(budget.user_clients)
        )
    return load_settings(profile=settings.profile, home=settings.home)


# ---- the story ----------------------------------------------------------------------------------
def flow_overrides(budget: DemoBudget, base: str, train: dict[str, Any]) -> dict[str, Any]:
    """Settings for the demo's retrain runs: its endpoint, its bake, its budget."""
    evaluate = {"max_examples": budget.evaluate_max_examples}
    return {
        "train": train,
        "evaluate": {k: v for k, v in evaluate.items() if v is not None},
        "promote": {
            "endpoints": [base],
            "bake_seconds": budget.bake_seconds,
            "bake_poll_seconds": 2.0,
            "online_share": budget.online_share,
            "online_min_feedback": budget.online_feedback,
        },
    }


def first_champion(
    settings: Settings, base: str, budget: DemoBudget, progress: Progress
) -> dict[str, Any]:
    """Train on both benchmarks, gate against the majority baseline on both, promote."""
    from citeops.flows.retrain import retrain

    progress("no champion yet: training a first one on SciFact + Citation-Integrity")
    train = budget.first_train | {"include_feedback": False}
    trigger = {"causes": ["bootstrap"], "reasons": ["no champion: the demo's first model"]}
    return retrain(trigger=trigger, overrides=flow_overrides(budget, base, train))


def run_demo(
    settings: Settings, budget: DemoBudget, progress: Progress, log_path: Path | None = None
) -> DemoSummary:
    """The story (see the module docstring); returns what happened. ``log_path``: the run's
    full log, named in the summary (the serving endpoint's output goes beside it, to
    ``<name>-serve.log``; default: ``<home>/state/demo-serve.log`` and no run log).

    Raises:
        DemoError: the data is missing or the endpoint does not start.
        CiteopsError: a stage failed for a reason the user can act on.
    """
    from citeops.flows.monitor import monitor
    from citeops.flows.retrain import retrain
    from citeops.tasks.data.multivers import available_splits
    from citeops.tasks.inference.aliases import CHAMPION
    from citeops.tasks.registry.register import get_version_by_alias
    from citeops.tasks.release.promote import BakeFailed, PromotionFailed
    from citeops.tasks.stack.processes import free_port
    from citeops.tasks.validate.gate import GateFailed

    started = time.perf_counter()
    splits = available_splits(settings.data_dir)
    if not {"scifact", "citint"} <= set(splits):
        raise DemoError(f"no benchmark data in {settings.data_dir}: run `citeops data fetch`")
    settings = demo_credentials(settings, budget)
    traffic = Traffic()
    before = get_version_by_alias(settings, CHAMPION)
    port = free_port(settings.serve.host)
    first: dict[str, Any] | None = None
    retrained: dict[str, Any] | None = None
    serve_log = (
        log_path.with_name(f"{log_path.stem}-serve.log")
        if log_path
        else settings.state_dir / "demo-serve.log"
    )
    with serving_endpoint(settings, port, progress, serve_log) as base:
        if before is None:
            try:
                first = first_champion(settings, base, budget, progress)
            except (GateFailed, PromotionFailed, BakeFailed) as refused:
                raise DemoError(f"the first champion was refused: {refused}") from None
            progress(f"first champion: version {first['version']} is live")
        else:
            progress(f"champion: version {before} (the endpoint starts on it)")
        decision: dict[str, Any] = {}
        drift: dict[str, Any] = {}
        seeded: list[Any] = []
        missing = settings.trigger.min_new_feedback
        for round_ in range(1, budget.feedback_rounds + 1):
            count = feedback_round_size(missing, budget.flip_share)
            progress(f"simulated users: {count} Citation-Integrity pairs -> /predict, /feedback")
            send_feedback(settings, base, count, budget, traffic, seeded)
            time.sleep(3.0)  # the endpoint publishes its log parts every 2 s
            progress("monitor: ingest the logs, check drift, decide")
            result = monitor()
            decision, drift = result["decision"], result["drift"]
            progress(f"trigger: {'; '.join(decision['reasons'])}")
            if decision["retrain"]:
                break
            trusted = decision.get("inputs", {}).get("new_feedback") or 0
            missing = max(settings.trigger.min_new_feedback - trusted, 1)
            progress(f"the trigger did not fire (round {round_}); more users")
        flagging = seeded_flip_flagging(settings, seeded)
        if decision.get("retrain"):
            progress(
                "retrain: SciFact + Citation-Integrity + accepted feedback, from the "
                "champion's weights, while traffic keeps flowing"
            )
            champion = f"models:/{settings.mlflow.registered_model}@{CHAMPION}"
            train = budget.retrain | {"init_from": champion}
            overrides = flow_overrides(budget, base, train)
            with background_traffic(settings, base, budget, traffic):
                try:
                    retrained = retrain(trigger=decision, overrides=overrides, online=budget.online)
                except (GateFailed, PromotionFailed, BakeFailed) as refused:
                    progress(f"the candidate was refused; the champion stays: {refused}")
                    from citeops.tasks.store.promotions import list_records

                    retrained = list_records(settings, limit=1)[0].to_dict()
            if retrained.get("outcome") == "online":
                retrained = online_phase(settings, base, budget, traffic, progress, retrained)
    after = get_version_by_alias(settings, CHAMPION)
    return DemoSummary(
        champion_before=before,
        champion_after=after,
        first_champion=first,
        decision=decision,
        drift={k: drift.get(k) for k in ("status", "drift", "drifted_checks", "report")},
        retrain=retrained,
        traffic=traffic,
        endpoint=f"http://{settings.serve.host}:{port} (stopped)",
        wall_seconds=time.perf_counter() - started,
        flagging=flagging,
        where={
            "mlflow": f"{runnable('mlflow')} ui --backend-store-uri {settings.mlflow.tracking_uri}",
            "history": f"{runnable('citeops')} history",
            "drift_report": str(drift.get("report") or ""),
            "home": str(settings.home),
            "log": str(log_path or ""),
            "serve_log": str(serve_log),
        },
    )


def online_phase(
    settings: Settings,
    base: str,
    budget: DemoBudget,
    traffic: Traffic,
    progress: Progress,
    started: dict[str, Any],
) -> dict[str, Any]:
    """The gated challenger's A/B phase: simulated users on both arms send feedback, the
    ``online-review`` flow reads the A/B report until its verdict is promote or abort (at
    most ``online_rounds`` rounds; then the phase is left running, as in production);
    returns the record that ended the phase (or the one that started it)."""
    from citeops.flows.online import online_review

    progress(f"online phase: {started.get('detail', '')}")
    for round_ in range(1, budget.online_rounds + 1):
        count = max(budget.online_feedback, int(budget.online_feedback / budget.online_share))
        progress(f"simulated users on both arms: {count} pairs -> /predict, /feedback")
        send_feedback(settings, base, count, budget, traffic)
        time.sleep(3.0)  # the endpoint publishes its log parts every 2 s
        review = online_review(promote=flow_overrides(budget, base, {})["promote"])
        report = review.get("report") or {}
        progress(f"online review {round_}: {report.get('verdict')}: {report.get('reason')}")
        if review.get("record"):
            return review["record"]
        if not review.get("active"):
            break
    progress("the online phase is still running: `citeops ab report` / `citeops ab stop`")
    return started


def seeded_flip_flagging(settings: Settings, seeded: list[Any]) -> dict[str, Any]:
    """How the feedback-quality stage (run by ``monitor``) flagged this run's labels: the
    seeded flips caught (recall) and the correct labels flagged (precision)."""
    from citeops.tasks.feedback.measure import measure_stored_flags

    measure = measure_stored_flags(settings, seeded)
    return measure.to_dict() | {"line": measure.line()}


def runnable(script: str) -> str:
    """How to run this environment's console ``script`` from the current folder, as printed
    in the summary: its bare name where ``PATH`` finds this same one, else its path (relative
    when under the current folder: ``.venv/bin/citeops`` after ``make run``)."""
    here = Path(sys.executable).parent / script
    if not here.exists():
        return script
    found = shutil.which(script)
    if found and Path(found).resolve() == here.resolve():
        return script
    try:
        return str(here.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(here.absolute())


def summary_text(summary: DemoSummary) -> str:
    """The closing summary for the terminal."""
    lines = ["", "== citeops demo: summary =="]
    decision = summary.decision
    lines.append(f"trigger      {'+'.join(decision.get('causes') or []) or 'did not fire'}")
    for reason in decision.get("reasons") or []:
        lines.append(f"             {reason}")
    checks = summary.drift.get("drifted_checks") or []
    lines.append(f"drift        {summary.drift.get('status')}: {', '.join(checks) or 'no check'}")
    record = summary.retrain
    if record:
        table = (record.get("gate") or {}).get("text_table")
        if table:
            lines += ["", table, ""]
        online = ((record.get("gate") or {}).get("online") or {}).get("report")
        if online:
            from citeops.tasks.release.online_report import report_text

            lines += [report_text(online), ""]
        lines.append(f"outcome      {record['outcome']}: {record.get('detail', '')}")
        if record.get("cost_usd") is not None:
            lines.append(f"train cost   ${record['cost_usd']:.4f} (estimated)")
    first = summary.first_champion
    chain = [summary.champion_before or "none"]
    if first and first.get("outcome") == "promoted":
        chain.append(f"{first['version']} (first)")
    if record and record.get("outcome") == "promoted":
        chain.append(f"{record['version']} (retrained)")
    lines.append(f"champion     {' -> '.join(chain)}; live at the end: {summary.champion_after}")
    t = summary.traffic
    lines.append(
        f"requests     {t.predictions} predictions, {t.feedback} feedback, {t.failed} failed"
        + (f" ({'; '.join(t.errors)})" if t.errors else "")
    )
    if summary.flagging:
        lines.append(f"flagging     {summary.flagging['line']}")
    lines.append(f"wall time    {summary.wall_seconds / 60:.1f} min")
    where = summary.where
    lines.append(f"history      {where['history']}")
    lines.append(f"mlflow       {where['mlflow']}")
    if where.get("drift_report"):
        lines.append(f"drift report {where['drift_report']}")
    lines.append(f"serving log  {where['serve_log']}")
    if where.get("log"):
        lines.append(f"full log     {where['log']}")
    return "\n".join(lines)
