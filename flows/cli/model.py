"""`citeops train`, `citeops evaluate`, `citeops bench train` (registered on the root app)."""

from __future__ import annotations

import typer

from flows.cli.common import info, print_json, settings_from


def train_command(
    base_model: str | None = typer.Option(None, help="minilm | tiny | HF id or local folder."),
    epochs: int | None = typer.Option(None, help="Training epochs (train.epochs)."),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps (-1: no cap)."),
    max_examples: int | None = typer.Option(None, help="Use at most N training examples."),
    max_length: int | None = typer.Option(None, help="Tokens per (evidence, claim) pair."),
    seed: int | None = typer.Option(None, help="Random seed (data order, init)."),
    as_json: bool = typer.Option(False, "--json", help="Print {run_id, model_uri, ...} as JSON."),
) -> None:
    """Fine-tune the verifier, track the run in MLflow and register a new model version."""
    from tasks.model.train import train_model

    settings = settings_from(
        model={"base_model": base_model},
        train={
            "epochs": epochs,
            "max_steps": max_steps,
            "max_examples": max_examples,
            "max_length": max_length,
            "seed": seed,
        },
    )
    info(
        f"training {settings.model.base_model} on {', '.join(settings.train.datasets)} "
        f"(max_length {settings.train.max_length}); MLflow: {settings.mlflow.tracking_uri}"
    )
    result = train_model(settings, progress=True)
    if as_json:
        print_json(result.summary())
        return
    metrics = result.metrics
    typer.echo(f"run        {result.run_id}")
    typer.echo(f"model      {result.model_uri}" + (f"  (@{result.alias})" if result.alias else ""))
    typer.echo(
        f"dev        macro F1 {metrics.get('f1_macro', float('nan')):.3f}  "
        f"accuracy {metrics.get('accuracy', float('nan')):.3f}  "
        f"({result.train_examples} train / {result.dev_examples} dev examples, "
        f"{result.steps} steps, {result.wall_seconds:.0f} s)"
    )


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the model commands to the root and bench apps."""
    app.command("train")(train_command)
