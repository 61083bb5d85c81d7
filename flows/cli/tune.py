"""`citeops tune`: the recipe search on dev (registered on the root app)."""

from __future__ import annotations

from pathlib import Path

import typer

from citeops.flows.cli.common import info, print_json, settings_from, stage_progress


def tune_command(
    trials: int | None = typer.Option(None, min=1, help="Trials to run (tune.trials)."),
    budget_minutes: float | None = typer.Option(
        None, min=0.01, help="Wall-clock budget of the whole search (tune.budget_minutes)."
    ),
    study: str | None = typer.Option(
        None, help="Study name (tune.study); the same name continues an earlier search."
    ),
    base_model: str | None = typer.Option(None, help="minilm | tiny | HF id or local folder."),
    storage: str | None = typer.Option(
        None,
        help="Where the study is kept (tune.storage): an Optuna RDB URL or journal:///file; "
        "processes given the same storage and --study share one search.",
    ),
    sampler_seed: int | None = typer.Option(
        None, help="Seed of the sampler (tune.sampler_seed); give each parallel process its own."
    ),
    max_examples: int | None = typer.Option(
        None, min=1, help="Training pairs per trial (tune.max_examples; default all)."
    ),
    max_eval_examples: int | None = typer.Option(
        None, min=1, help="Dev pairs per trial (tune.max_eval_examples; default all)."
    ),
    write_profile: str | None = typer.Option(
        None,
        "--write-profile",
        help="Write the best recipe as the train section of this settings profile "
        "(e.g. configs/profiles/local.yaml).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the trials and the best recipe."),
) -> None:
    """Search the training recipe on dev (Optuna; each trial an MLflow run), print the best."""
    from citeops.tasks.train.tune import recipe_yaml, trials_table, tune, write_profile_recipe

    settings = settings_from(
        model={"base_model": base_model},
        tune={
            "trials": trials,
            "budget_minutes": budget_minutes,
            "study": study,
            "storage": storage,
            "sampler_seed": sampler_seed,
            "max_examples": max_examples,
            "max_eval_examples": max_eval_examples,
        },
    )
    info(
        f"tuning {settings.model.base_model} on {', '.join(settings.train.datasets)} dev; "
        f"MLflow experiment {settings.tune.experiment!r} at {settings.mlflow.tracking_uri}"
    )
    with stage_progress(name="citeops.tasks.train.tune"):
        result = tune(settings, progress=info)
    if write_profile is not None:
        write_profile_recipe(Path(write_profile), result)
        info(f"best recipe written to {write_profile}")
    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(trials_table(result))
    if result.best_value is None:
        typer.echo("no trial completed")
        return
    typer.echo(
        f"\nbest: trial {result.best_trial} of study {result.study!r}, dev macro F1 "
        f"{result.best_value:.3f} (mean over datasets); {result.minutes:.1f} min this call; "
        f"MLflow run {result.summary_run_id}\n"
    )
    typer.echo(recipe_yaml(result).rstrip())


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
