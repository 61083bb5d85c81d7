"""The recipe search behind ``citeops tune``: Optuna trials of :func:`fit_candidate`,
scored on dev only, each one MLflow run in the ``tune.experiment`` experiment.

The study is kept in ``tune.storage`` (default ``<home>/tune.db``, Optuna's SQLite
storage), so a second call with the same ``tune.study`` continues it, and several processes
given one storage share the search. A new study's first trial is the recipe in use
(``tune.baseline_first``); a trial whose dev score after an epoch is below the median of
earlier trials' at that epoch is stopped there (``tune.pruner``). The best recipe is
written as a ``train:`` profile section (:func:`recipe_yaml`); :func:`write_profile_recipe`
puts it in a settings profile between markers, which is how the ``local`` profile's
defaults are chosen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from citeops.configs.settings import TrainSettings
from citeops.tasks.errors import CiteopsError
from citeops.tasks.tracking import ensure_experiment, require_fluent_tracking
from citeops.tasks.train.ddp import world_size
from citeops.tasks.train.fit import SELECTION_METRIC, fit_candidate
from citeops.tasks.train.training_set import build_training_set

if TYPE_CHECKING:
    import optuna

    from citeops.configs.settings import SearchDimension, Settings
    from citeops.tasks.train.module import PruneOnDev
    from citeops.tasks.train.training_set import TrainingSet

log = logging.getLogger(__name__)

OBJECTIVE = "f1_macro_by_dataset"  # the selected epoch's mean over datasets of dev macro F1
BEGIN_MARKER = "# --- train recipe: written by `citeops tune --write-profile`"
END_MARKER = "# --- end of the tuned train recipe ---"


class TuneError(CiteopsError):
    """The search cannot run (no dev set, no time left, a profile it cannot write)."""


@dataclass
class TrialRecord:
    """One trial: its values, dev scores and cost."""

    number: int
    state: str  # complete | pruned | failed
    params: dict[str, Any]
    value: float | None = None  # dev macro F1, mean over datasets
    dev: dict[str, float] = field(default_factory=dict)  # per dataset
    minutes: float = 0.0
    epochs_run: int = 0
    run_id: str | None = None
    error: str | None = None
    baseline: bool = False  # the recipe in use (tune.baseline_first)


@dataclass
class TuneResult:
    """What a ``citeops tune`` call did; ``best`` counts the trials of earlier calls too."""

    study: str
    experiment: str
    objective: str
    trials: list[TrialRecord]
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    minutes: float
    recipe: dict[str, Any]  # the ``train:`` section to make the default
    summary_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest(trial: optuna.Trial, space: dict[str, SearchDimension]) -> dict[str, Any]:
    """The trial's value of each ``train.*`` setting in ``space``."""
    values: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.choices is not None:
            values[name] = trial.suggest_categorical(name, list(dim.choices))
        elif dim.integer:
            values[name] = trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    return values


def trial_settings(settings: Settings, values: dict[str, Any], max_minutes: float) -> Settings:
    """``settings`` with the trial's ``train`` values, its time cap, no model registration
    and the tune experiment."""

    train = TrainSettings.model_validate(
        settings.train.model_dump() | values | {"max_minutes": max_minutes, "register_alias": None}
    )
    mlflow = settings.mlflow.model_copy(update={"experiment": settings.tune.experiment})
    return settings.model_copy(update={"train": train, "mlflow": mlflow})


def search_data(settings: Settings) -> TrainingSet:
    """The benchmark train/dev splits every trial uses (no feedback: the recipe is for the
    benchmarks), capped by ``tune.max_examples`` / ``tune.max_eval_examples``."""

    train = settings.train.model_copy(
        update={
            "include_feedback": False,
            "max_examples": settings.tune.max_examples,
            "max_eval_examples": settings.tune.max_eval_examples,
        }
    )
    data = build_training_set(settings.model_copy(update={"train": train}))
    if not data.dev:
        raise TuneError(
            f"no dev examples for {', '.join(settings.train.datasets)}: nothing to score"
        )
    return data


BASELINE_ATTR = "citeops.baseline"  # user attribute of the trial that is the recipe in use
SQLITE_TIMEOUT_SECONDS = 60  # parallel workers wait this long for SQLite's write lock


def study_storage(settings: Settings) -> optuna.storages.BaseStorage:
    """``tune.storage`` opened: a journal file, or an RDB URL (SQLite waits for its lock)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    settings.home.mkdir(parents=True, exist_ok=True)
    url = settings.tune.storage or f"sqlite:///{settings.home / 'tune.db'}"
    if url.startswith("journal://"):
        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    kwargs = (
        {"connect_args": {"timeout": SQLITE_TIMEOUT_SECONDS}} if url.startswith("sqlite") else {}
    )
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as error:  # noqa: BLE001 - a bad URL or an unreachable database
        raise TuneError(f"cannot open tune.storage {url!r}: {error}") from None


def sampler(seed: int) -> optuna.samplers.BaseSampler:
    """TPE; with ``constant_liar`` parallel workers do not all draw next to a running trial."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def pruner(settings: Settings) -> optuna.pruners.BasePruner:
    """``tune.pruner``: the median rule after ``tune.prune_after_trials`` trials, or none."""
    import optuna

    if settings.tune.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=settings.tune.prune_after_trials)


def open_study(settings: Settings) -> optuna.Study:
    """The Optuna study ``tune.study`` in ``tune.storage`` (created or continued); a new
    one gets the recipe in use queued as its first trial (``tune.baseline_first``)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = settings.tune.sampler_seed
    study = optuna.create_study(
        study_name=settings.tune.study,
        storage=study_storage(settings),
        direction="maximize",
        sampler=sampler(seed),
        pruner=pruner(settings),
        load_if_exists=True,
    )
    earlier = len(study.trials)
    if earlier:  # a sampler seeded as before would draw the earlier calls' trials again
        study.sampler = sampler(seed + earlier)
    elif settings.tune.baseline_first:
        # skip_if_exists: a second process opening the new study at once queues no copy
        study.enqueue_trial(
            baseline_values(settings), user_attrs={BASELINE_ATTR: True}, skip_if_exists=True
        )
    return study


def baseline_values(settings: Settings) -> dict[str, Any]:
    """The recipe in use: ``train``'s value of each ``space`` key (an unset
    ``head_learning_rate`` is ``learning_rate``, which is what it means). A range holds
    any value (Optuna warns when it is outside); a choice not in ``choices`` is drawn."""
    values: dict[str, Any] = {}
    for name, dim in settings.tune.space.items():
        value = getattr(settings.train, name)
        if value is None and name == "head_learning_rate":
            value = settings.train.learning_rate
        if value is None or (dim.choices is not None and value not in dim.choices):
            continue
        if dim.choices is None:
            value = int(value) if dim.integer else float(value)
        values[name] = value
    return values


def prune_callback(settings: Settings, trial: optuna.Trial) -> PruneOnDev | None:
    """The pruning callback for a single-process fit (None with DDP: one rank stopping
    alone would leave the others waiting, or with ``tune.pruner`` none)."""
    from citeops.tasks.train.module import PruneOnDev

    if settings.tune.pruner == "none" or world_size(settings) > 1:
        return None
    return PruneOnDev(trial, SELECTION_METRIC)


def run_trial(
    settings: Settings, data: TrainingSet, trial: optuna.Trial, max_minutes: float
) -> TrialRecord:
    """Fit one trial's recipe (an MLflow run, no model logged) and score it on dev."""

    values = suggest(trial, settings.tune.space)
    started = time.perf_counter()
    baseline = bool(trial.user_attrs.get(BASELINE_ATTR))
    record = TrialRecord(number=trial.number, state="complete", params=values, baseline=baseline)
    fitting = trial_settings(settings, values, max_minutes)
    prune = prune_callback(fitting, trial)
    try:
        candidate = fit_candidate(
            fitting,
            data,
            progress=False,
            run_name=f"trial-{trial.number}" + ("-baseline" if baseline else ""),
            tags={
                "citeops.tune.study": settings.tune.study,
                "citeops.tune.trial": str(trial.number),
            },
            log_model=False,
            callbacks=[prune] if prune else None,
        )
    except CiteopsError as error:  # a recipe that cannot train (e.g. out of memory)
        record.state, record.error = "failed", str(error)
    else:
        record.value = candidate.metrics.get(OBJECTIVE)
        record.dev = {
            key.removeprefix("f1_macro_"): value
            for key, value in candidate.metrics.items()
            if key.startswith("f1_macro_") and key != OBJECTIVE
        }
        record.epochs_run, record.run_id = candidate.epochs_run, candidate.run_id
        if record.value is None:
            record.state, record.error = "failed", f"no {OBJECTIVE} in the dev metrics"
        elif prune is not None and prune.pruned_at is not None:
            record.state = "pruned"
            record.error = f"stopped after epoch {prune.pruned_at}: below the median"
    record.minutes = (time.perf_counter() - started) / 60
    return record


def tell(study: optuna.Study, trial: optuna.Trial, record: TrialRecord) -> None:
    import optuna

    if record.state == "complete":
        study.tell(trial, record.value)
    elif record.state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def best_of(study: optuna.Study) -> tuple[float | None, dict[str, Any], int | None]:
    """The best complete trial of the whole study (earlier calls included)."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None, {}, None
    best = max(complete, key=lambda t: t.value if t.value is not None else float("-inf"))
    return best.value, dict(best.params), best.number


def recipe(settings: Settings, best_params: dict[str, Any]) -> dict[str, Any]:
    """The ``train:`` profile section: the datasets searched on plus the best values."""
    return {"datasets": list(settings.train.datasets), **best_params}


def tune(settings: Settings, progress: Callable[[str], None] | None = None) -> TuneResult:
    """Run up to ``tune.trials`` trials within ``tune.budget_minutes`` (no trial starts
    with less than ``tune.min_trial_minutes`` left; a trial stops at the budget's end).

    Raises:
        TuneError, DataFileError, BaseModelError: clear, user-facing problems.
    """
    say = progress or log.info
    cfg = settings.tune
    started = time.perf_counter()
    deadline = started + cfg.budget_minutes * 60
    study = open_study(settings)  # first: a bad tune.storage fails before the data is built
    data = search_data(settings)
    say(
        f"study {cfg.study!r} ({len(study.trials)} earlier trials): up to {cfg.trials} trials "
        f"in {cfg.budget_minutes:g} min on {len(data.train)} train / {len(data.dev)} dev pairs"
    )
    records: list[TrialRecord] = []
    for _ in range(cfg.trials):
        left = (deadline - time.perf_counter()) / 60
        if left < cfg.min_trial_minutes:
            say(f"{left:.1f} min left of the budget: no further trial")
            break
        trial = study.ask()
        record = run_trial(settings, data, trial, max_minutes=left)
        tell(study, trial, record)
        records.append(record)
        say(describe(record))
    if not records:
        raise TuneError(
            f"no trial ran: tune.budget_minutes {cfg.budget_minutes:g} is below "
            f"tune.min_trial_minutes {cfg.min_trial_minutes:g}"
        )
    best_value, best_params, best_trial = best_of(study)
    result = TuneResult(
        study=cfg.study,
        experiment=cfg.experiment,
        objective=f"dev {OBJECTIVE}",
        trials=records,
        best_value=best_value,
        best_params=best_params,
        best_trial=best_trial,
        minutes=(time.perf_counter() - started) / 60,
        recipe=recipe(settings, best_params),
    )
    result.summary_run_id = log_summary(settings, result)
    return result


def describe(record: TrialRecord) -> str:
    """One progress line for a finished trial."""
    values = ", ".join(f"{k}={_short(v)}" for k, v in record.params.items())
    name = f"trial {record.number}" + (" (the recipe in use)" if record.baseline else "")
    if record.state == "failed":
        return f"{name} failed after {record.minutes:.1f} min: {record.error}"
    if record.state == "pruned":
        return f"{name} pruned after {record.minutes:.1f} min, {record.error} ({values})"
    return f"{name}: dev F1 {record.value:.3f} in {record.minutes:.1f} min ({values})"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trials_table(result: TuneResult) -> str:
    """The trials of this call as a Markdown table (dev scores only)."""
    names = sorted({k for t in result.trials for k in t.params})
    datasets = sorted({k for t in result.trials for k in t.dev})
    head = ["trial", *names, "dev F1 (mean)", *(f"dev F1 {d}" for d in datasets), "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for t in result.trials:
        value = f"{t.value:.3f}" if t.value is not None else t.state
        value += " (pruned)" if t.state == "pruned" else ""
        number = f"{t.number} (in use)" if t.baseline else str(t.number)
        cells = [number, *(_short(t.params.get(n, "")) for n in names), value]
        cells += [f"{t.dev[d]:.3f}" if d in t.dev else "" for d in datasets]
        lines.append("| " + " | ".join([*cells, f"{t.minutes:.1f}"]) + " |")
    return "\n".join(lines)


def recipe_yaml(result: TuneResult) -> str:
    """The best recipe as a ``train:`` profile section."""
    return yaml.safe_dump({"train": result.recipe}, sort_keys=False)


def log_summary(settings: Settings, result: TuneResult) -> str:
    """One ``tune-summary`` run in the tune experiment: best values, the trials table and
    the recipe; its id."""
    import mlflow

    require_fluent_tracking(settings)
    experiment_id = ensure_experiment(settings, settings.tune.experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name="tune-summary") as run:
        mlflow.set_tags({"citeops.kind": "tune", "citeops.tune.study": result.study})
        mlflow.log_params({f"best_{k}": v for k, v in result.best_params.items()})
        if result.best_value is not None:
            mlflow.log_metric("best_dev_f1_macro_by_dataset", result.best_value)
        mlflow.log_metric("trials", len(result.trials))
        mlflow.log_text(trials_table(result), "trials.md")
        mlflow.log_text(recipe_yaml(result), "recipe.yaml")
        mlflow.log_dict(result.to_dict(), "tune.json")
    return run.info.run_id


def write_profile_recipe(path: Path, result: TuneResult) -> None:
    """Put the best recipe in the settings profile ``path`` as its ``train:`` section,
    between the markers (replacing an earlier tuned block, or a plain ``train:`` section).

    Raises:
        TuneError: the profile cannot be read, parsed back, or written.
    """
    if result.best_value is None:
        raise TuneError("no trial completed: no recipe to write")
    block = "\n".join(
        [
            f"{BEGIN_MARKER} (study {result.study!r}, trial {result.best_trial}, "
            f"dev macro F1 {result.best_value:.3f}) ---",
            recipe_yaml(result).rstrip(),
            END_MARKER,
        ]
    )
    try:
        text = path.read_text()
        path.write_text(replace_train_section(text, block))
    except OSError as error:
        raise TuneError(f"cannot write the profile {path}: {error.strerror}") from None


def replace_train_section(text: str, block: str) -> str:
    """``text`` with its tuned block, else its top-level ``train:`` section, replaced by
    ``block`` (appended when it has neither); checked to parse back to the same recipe."""
    lines = text.splitlines()
    if BEGIN_MARKER in text and END_MARKER in text:
        start = next(i for i, line in enumerate(lines) if line.startswith(BEGIN_MARKER))
        end = next(i for i, line in enumerate(lines) if line.startswith(END_MARKER)) + 1
    elif "train:" in lines:
        start = lines.index("train:")
        end = start + 1
        while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
            end += 1
    else:
        start = end = len(lines)
    new = "\n".join([*lines[:start], block, *lines[end:]]) + "\n"
    parsed = yaml.safe_load(new) or {}
    wanted = yaml.safe_load(block)["train"]
    if parsed.get("train") != wanted:
        raise TuneError("the profile's train section could not be replaced cleanly")
    return new
