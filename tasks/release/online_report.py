"""The A/B report of an online phase: per-arm figures read from the query and feedback
logs, the accuracy difference with its interval, the shadow agreement, and the verdict.

The logs are read with the ingest readers (a local folder or ``s3://``, published parts
only, each line parsed as ingestion parses it; unreadable lines are counted, not used),
restricted to the experiment: lines written at or after its start whose model version is
the champion's or the challenger's. A request is judged once: when several feedback lines
answer the same ``request_id``, the latest counts. A feedback item is right when its
``user_label`` equals the prediction it answers (the feedback line's ``prediction``, else
the query line's).

- **split**: each arm is judged on the feedback to its own answers; the difference of
  accuracy (challenger minus champion) has an unpaired bootstrap interval.
- **shadow**: the champion answers everything; the challenger is judged on the feedback to
  requests it scored in the shadow (its ``shadow_prediction`` against the same
  ``user_label``), so the difference has a paired bootstrap interval; the agreement is the
  share of mirrored requests on which both versions gave the same label.

The verdict (:func:`online_verdict`) is ``continue`` until ``promote.online_min_feedback``
feedback items judge the challenger or ``promote.online_max_hours`` have passed; then
``abort`` when the challenger is significantly worse (the interval of the difference lies
below 0) or, in shadow mode, agrees with the champion on less than
``promote.online_min_agreement`` of the mirrored requests; else ``promote``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from citeops.tasks.classifier.stats import (
    bootstrap_accuracy_difference,
    bootstrap_accuracy_interval,
)
from citeops.tasks.errors import CiteopsError
from citeops.tasks.ingest.parse import BOM
from citeops.tasks.ingest.sources import list_objects, resolve_root

if TYPE_CHECKING:
    from citeops.configs.lifecycle import PromoteSettings
    from citeops.configs.settings import Settings

MODES = ("split", "shadow")
CHAMPION, CHALLENGER = "champion", "challenger"
VERDICTS = ("promote", "abort", "continue")
PARTITION = re.compile(r"/date=(\d{4}-\d{2}-\d{2})/")


class ExperimentStatusError(CiteopsError):
    """An endpoint's experiment status lacks a field the report needs."""


def parse_time(value: Any) -> datetime:
    """An ISO 8601 string (``Z`` or an offset; none is UTC) or epoch seconds, as aware UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class Experiment:
    """One online phase as the endpoints describe it (``GET /admin/ab``)."""

    experiment_id: str
    mode: str  # split | shadow
    share: float
    champion_version: str
    challenger_version: str
    started_at: datetime  # aware UTC
    endpoints: tuple[str, ...] = ()  # where it runs, when known

    @classmethod
    def from_status(cls, body: dict[str, Any]) -> Experiment:
        """From an endpoint's experiment status or start answer.

        Raises:
            ExperimentStatusError: a field is missing.
        """
        names = ("experiment_id", "mode", "share", "champion_version", "challenger_version")
        missing = [name for name in (*names, "started_at") if body.get(name) is None]
        if missing:
            raise ExperimentStatusError(
                f"the endpoint's experiment status lacks {', '.join(missing)}"
            )
        return cls(
            experiment_id=str(body["experiment_id"]),
            mode=str(body["mode"]),
            share=float(body["share"]),
            champion_version=str(body["champion_version"]),
            challenger_version=str(body["challenger_version"]),
            started_at=parse_time(body["started_at"]),
        )

    def arm_of(self, version: str | None) -> str | None:
        """The arm a model version answers for in this experiment, ``None`` for another."""
        if version == self.challenger_version:
            return CHALLENGER
        if version == self.champion_version:
            return CHAMPION
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "started_at": self.started_at.isoformat(),
            "endpoints": list(self.endpoints),
        }


# ---- the logs ---------------------------------------------------------------------------
@dataclass
class ExperimentLogs:
    """The experiment's query lines (by request id) and feedback lines, and what was left
    out: lines the parser refused, and lines before the start or of other versions."""

    queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    unreadable: int = 0
    outside: int = 0


def line_fields(raw: bytes) -> dict[str, Any]:
    """The JSON object of a log line the parser accepted (with the fields it does not keep:
    ``arm``, ``shadow_prediction``, ...)."""

    return orjson.loads(raw.removeprefix(BOM).strip())


def partition_day(uri: str) -> str | None:
    """``YYYY-MM-DD`` of a ``.../date=YYYY-MM-DD/part.jsonl`` object, ``None`` otherwise."""
    found = PARTITION.search(uri.replace("\\", "/"))
    return found.group(1) if found else None


def _label(value: Any) -> str | None:
    return value.strip().upper() if isinstance(value, str) and value.strip() else None


def add_line(logs: ExperimentLogs, kind: str, row: dict[str, Any], experiment: Experiment) -> None:
    """Keep one parsed line when it belongs to the experiment (else count it outside).

    Feedback lines are kept from the start on whatever their version: one without
    ``model_version`` may still answer an experiment request (resolved by its request id).
    """
    start = experiment.started_at.replace(tzinfo=None)
    if row["datetime"] < start:
        logs.outside += 1
        return
    fields = line_fields(row["raw"])
    version = None if fields.get("model_version") is None else str(fields["model_version"])
    if kind == "queries":
        arm = fields.get("arm") or experiment.arm_of(version)
        if experiment.arm_of(version) is None or arm not in (CHAMPION, CHALLENGER):
            logs.outside += 1
            return
        shadow_version = fields.get("shadow_model_version")
        mirrored = shadow_version is None or str(shadow_version) == experiment.challenger_version
        logs.queries[row["request_id"]] = {
            "arm": arm,
            "version": version,
            "prediction": _label(fields.get("prediction")),
            "latency_ms": row["latency_ms"],
            "shadow_prediction": _label(fields.get("shadow_prediction")) if mirrored else None,
        }
        return
    logs.feedback.append(
        {
            "request_id": fields.get("request_id"),
            "version": version,
            "arm": fields.get("arm"),
            "prediction": _label(fields.get("prediction")),
            "user_label": row["user_label"],
            "datetime": row["datetime"],
        }
    )


def read_experiment_logs(
    settings: Settings, experiment: Experiment, root: str | None = None
) -> ExperimentLogs:
    """The experiment's lines under the log root (``root``, else ``settings.log_root``);
    date partitions before the start day are not read.

    Raises:
        SourceError: the log root cannot be listed or an object cannot be read.
    """
    from citeops.tasks.ingest.read import ObjectReader

    logs = ExperimentLogs()
    first_day = experiment.started_at.date().isoformat()
    listing = list_objects(settings, resolve_root(settings, root), missing_ok=True)
    for obj in listing.objects:
        day = partition_day(obj.uri)
        if day is not None and day < first_day:
            continue
        for chunk in ObjectReader(settings, obj).chunks():
            logs.unreadable += len(chunk.rejects)
            for row in chunk.rows:
                add_line(logs, obj.kind, row, experiment)
    return logs


# ---- the figures ------------------------------------------------------------------------
@dataclass
class ArmFigures:
    """One arm: its version, the requests it answered (shadow: scored), the feedback that
    judges it, its accuracy against the feedback labels with a 95 % interval, p95 latency."""

    arm: str
    version: str
    requests: int
    feedback: int
    correct: int
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    p95_latency_ms: float | None


@dataclass
class Difference:
    """Challenger accuracy minus champion accuracy with its bootstrap 95 % interval."""

    point: float
    low: float
    high: float
    paired: bool
    challenger_items: int
    champion_items: int


@dataclass
class Agreement:
    """Shadow mode: on how many mirrored requests both versions gave the same label."""

    mirrored: int
    agreed: int
    share: float | None


@dataclass
class OnlineReport:
    """What ``citeops ab report --json`` prints and a promotion record keeps."""

    experiment: Experiment
    generated_at: datetime
    hours: float
    arms: dict[str, ArmFigures]
    difference: Difference | None
    agreement: Agreement | None
    judged_feedback: int
    verdict: str
    reason: str
    unreadable_lines: int = 0
    outside_lines: int = 0
    endpoint_counts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["experiment"] = self.experiment.to_dict()
        out["generated_at"] = self.generated_at.isoformat()
        return out

    def text(self) -> str:
        """The report for the terminal (and ``citeops history``)."""
        return report_text(self.to_dict())


@dataclass
class Judgement:
    """Right (1) or wrong (0) answers of each arm, and the paired pairs in shadow mode."""

    champion: list[int] = field(default_factory=list)
    challenger: list[int] = field(default_factory=list)
    paired: list[tuple[int, int]] = field(default_factory=list)  # (challenger, champion)


def latest_per_request(feedback: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One feedback line per request id (the latest); lines without one all count."""
    latest: dict[str, dict[str, Any]] = {}
    loose = []
    for item in sorted(feedback, key=lambda f: f["datetime"]):
        if item["request_id"]:
            latest[str(item["request_id"])] = item
        else:
            loose.append(item)
    return loose + list(latest.values())


def judge_feedback(experiment: Experiment, logs: ExperimentLogs) -> Judgement:
    """Score every feedback item of the experiment for the arm(s) it judges."""
    judged = Judgement()
    for item in latest_per_request(logs.feedback):
        query = logs.queries.get(str(item["request_id"])) if item["request_id"] else None
        version = item["version"] or (query or {}).get("version")
        arm = item["arm"] or (query or {}).get("arm") or experiment.arm_of(version)
        prediction = item["prediction"] or (query or {}).get("prediction")
        if experiment.arm_of(version) is None or arm not in (CHAMPION, CHALLENGER):
            continue
        if prediction is None:
            continue
        right = int(item["user_label"] == prediction)
        (judged.challenger if arm == CHALLENGER else judged.champion).append(right)
        shadow = (query or {}).get("shadow_prediction")
        if experiment.mode == "shadow" and arm == CHAMPION and shadow is not None:
            shadow_right = int(item["user_label"] == shadow)
            judged.challenger.append(shadow_right)
            judged.paired.append((shadow_right, right))
    return judged


def p95(values: list[float]) -> float | None:
    """The 95th percentile (numpy's linear interpolation), ``None`` without values."""
    return float(np.percentile(values, 95)) if values else None


def arm_figures(
    settings: Settings,
    arm: str,
    version: str,
    requests: int,
    right: list[int],
    latency: list[float],
) -> ArmFigures:
    """One arm's figures; the accuracy interval from :mod:`citeops.tasks.classifier.stats`."""

    accuracy = low = high = None
    if right:
        stats = settings.stats
        accuracy, low, high = bootstrap_accuracy_interval(
            right, stats.bootstrap_resamples, stats.bootstrap_seed
        )
    return ArmFigures(
        arm, version, requests, len(right), sum(right), accuracy, low, high, p95(latency)
    )


def accuracy_difference(
    settings: Settings, experiment: Experiment, judged: Judgement
) -> Difference | None:
    """Paired on the mirrored feedback (shadow), unpaired between the arms (split)."""

    resamples, seed = settings.stats.bootstrap_resamples, settings.stats.bootstrap_seed
    paired = experiment.mode == "shadow"
    if paired:
        challenger = [shadow for shadow, _ in judged.paired]
        champion = [live for _, live in judged.paired]
    else:
        challenger, champion = judged.challenger, judged.champion
    if not challenger or not champion:
        return None
    found = bootstrap_accuracy_difference(challenger, champion, resamples, seed, paired)
    return Difference(*found, paired, len(challenger), len(champion))


def shadow_agreement(logs: ExperimentLogs) -> Agreement:
    mirrored = [q for q in logs.queries.values() if q["shadow_prediction"] is not None]
    agreed = sum(q["shadow_prediction"] == q["prediction"] for q in mirrored)
    return Agreement(len(mirrored), agreed, agreed / len(mirrored) if mirrored else None)


def online_verdict(
    cfg: PromoteSettings,
    mode: str,
    hours: float,
    judged_feedback: int,
    difference: Difference | None,
    agreement: Agreement | None,
) -> tuple[str, str]:
    """``(verdict, reason)``: ``continue`` | ``abort`` | ``promote`` (module docstring)."""
    enough = judged_feedback >= cfg.online_min_feedback
    if not enough and hours < cfg.online_max_hours:
        return "continue", (
            f"{judged_feedback} of {cfg.online_min_feedback} feedback items judge the "
            f"challenger after {hours:.1f} of {cfg.online_max_hours:g} h"
        )
    why = (
        f"{judged_feedback} feedback items judge the challenger"
        if enough
        else f"{cfg.online_max_hours:g} h passed with {judged_feedback} feedback items"
    )
    if difference is not None and difference.high < 0:
        return "abort", (
            f"{why}: the challenger is significantly worse, accuracy difference "
            f"{difference.point:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]"
        )
    if mode == "shadow" and agreement is not None and agreement.share is not None:
        if agreement.share < cfg.online_min_agreement:
            return "abort", (
                f"{why}: the versions agree on {agreement.share:.1%} of {agreement.mirrored} "
                f"mirrored requests, under promote.online_min_agreement "
                f"{cfg.online_min_agreement:.0%}"
            )
    shown = (
        f"accuracy difference {difference.point:+.3f} [{difference.low:+.3f}, "
        f"{difference.high:+.3f}]"
        if difference is not None
        else "no feedback to compare the arms on"
    )
    return "promote", f"{why}: not worse online ({shown})"


def build_report(
    settings: Settings,
    experiment: Experiment,
    logs: ExperimentLogs,
    now: datetime | None = None,
    endpoint_counts: dict[str, Any] | None = None,
) -> OnlineReport:
    """The figures and verdict of ``experiment`` from its ``logs`` at ``now`` (UTC)."""
    now = now or datetime.now(UTC)
    hours = max(0.0, (now - experiment.started_at).total_seconds() / 3600)
    judged = judge_feedback(experiment, logs)
    queries = list(logs.queries.values())
    champion_latency = [q["latency_ms"] for q in queries if q["arm"] == CHAMPION]
    if experiment.mode == "shadow":
        agreement: Agreement | None = shadow_agreement(logs)
        challenger_requests, challenger_latency = agreement.mirrored, []
    else:
        agreement = None
        challenger_latency = [q["latency_ms"] for q in queries if q["arm"] == CHALLENGER]
        challenger_requests = len(challenger_latency)
    arms = {
        CHAMPION: arm_figures(
            settings,
            CHAMPION,
            experiment.champion_version,
            sum(q["arm"] == CHAMPION for q in queries),
            judged.champion,
            [v for v in champion_latency if v is not None],
        ),
        CHALLENGER: arm_figures(
            settings,
            CHALLENGER,
            experiment.challenger_version,
            challenger_requests,
            judged.challenger,
            [v for v in challenger_latency if v is not None],
        ),
    }
    difference = accuracy_difference(settings, experiment, judged)
    verdict, reason = online_verdict(
        settings.promote, experiment.mode, hours, len(judged.challenger), difference, agreement
    )
    return OnlineReport(
        experiment,
        now,
        hours,
        arms,
        difference,
        agreement,
        len(judged.challenger),
        verdict,
        reason,
        logs.unreadable,
        logs.outside,
        dict(endpoint_counts or {}),
    )


# ---- the text ---------------------------------------------------------------------------
def _interval(value: float | None, low: float | None, high: float | None) -> str:
    return "-" if value is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def report_text(report: dict[str, Any]) -> str:
    """The terminal table of a stored report (``OnlineReport.to_dict()``)."""
    experiment = report["experiment"]
    lines = [
        f"online phase {experiment['experiment_id']} ({experiment['mode']}, share "
        f"{experiment['share']:.0%}) since {experiment['started_at'][:19]} UTC, "
        f"{report['hours']:.1f} h",
        f"{'arm':10}  {'version':>7}  {'requests':>8}  {'feedback':>8}  "
        f"{'accuracy (95% CI)':24}  {'p95 ms':>7}",
    ]
    for arm in report["arms"].values():
        latency = "-" if arm["p95_latency_ms"] is None else f"{arm['p95_latency_ms']:.1f}"
        accuracy = _interval(arm["accuracy"], arm["accuracy_low"], arm["accuracy_high"])
        lines.append(
            f"{arm['arm']:10}  {arm['version']:>7}  {arm['requests']:>8}  "
            f"{arm['feedback']:>8}  {accuracy:24}  {latency:>7}"
        )
    difference = report.get("difference")
    if difference:
        how = "paired" if difference["paired"] else "unpaired"
        lines.append(
            f"accuracy difference (challenger - champion): {difference['point']:+.3f} "
            f"[{difference['low']:+.3f}, {difference['high']:+.3f}] ({how})"
        )
    agreement = report.get("agreement")
    if agreement and agreement["share"] is not None:
        lines.append(
            f"agreement: {agreement['share']:.1%} of {agreement['mirrored']} mirrored requests"
        )
    lines.append(f"verdict: {report['verdict'].upper()}: {report['reason']}")
    return "\n".join(lines)


def online_summary(gate: dict[str, Any] | None) -> str | None:
    """One line of a record's online phase for ``citeops history`` (``None`` without one):
    the experiment, and once reported each arm's accuracy, the difference and the verdict."""
    online = (gate or {}).get("online") or {}
    experiment, report = online.get("experiment") or {}, online.get("report")
    if not experiment:
        return None
    head = (
        f"online {experiment['mode']} {experiment['share']:.0%} "
        f"v{experiment['challenger_version']} vs v{experiment['champion_version']}"
    )
    if not report:
        return f"{head} ({experiment['experiment_id']})"
    arms = [
        f"{arm['arm']} {_interval(arm['accuracy'], arm['accuracy_low'], arm['accuracy_high'])}"
        f" n={arm['feedback']}"
        for arm in report["arms"].values()
    ]
    difference = report.get("difference")
    diff = (
        f", diff {difference['point']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"
    )
    agreement = report.get("agreement") or {}
    agree = f", agreement {agreement['share']:.1%}" if agreement.get("share") is not None else ""
    return f"{head}: {'; '.join(arms)}{diff if difference else ''}{agree}; {report['verdict']}"
