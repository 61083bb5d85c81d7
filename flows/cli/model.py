"""`citeops train`, `citeops evaluate` (registered on the root app)."""

from __future__ import annotations

import typer

from citeops.flows.cli.common import info, print_json, settings_from


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
    from citeops.tasks.model.train import train_model

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
        f"dev        macro F1 {metrics.get('f1_macro_by_dataset', float('nan')):.3f} "
        f"(mean over datasets; pooled {metrics.get('f1_macro', float('nan')):.3f})  "
        f"accuracy {metrics.get('accuracy', float('nan')):.3f}  "
        f"({result.train_examples} train / {result.dev_examples} dev examples, "
        f"{result.steps} steps, {result.wall_seconds:.0f} s)"
    )


def evaluate_command(
    model_uri: str = typer.Option(
        ..., help="models:/claim-verifier/<v>, models:/claim-verifier@<alias> or a folder."
    ),
    max_examples: int | None = typer.Option(None, help="Evaluate at most N pairs per dataset."),
    precision: str = typer.Option("fp32", help="fp32 | bf16 | int8 inference."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Macro/per-class F1, AUROC and latency on the test sets, beside the majority baseline."""
    from citeops.tasks.model.evaluate import evaluate_model

    settings = settings_from(evaluate={"max_examples": max_examples})
    if precision not in ("fp32", "bf16", "int8"):
        raise typer.BadParameter("choose fp32, bf16 or int8", param_hint="--precision")
    info(
        f"evaluating {model_uri} on {', '.join(settings.evaluate.datasets)} "
        f"({settings.evaluate.split})"
    )
    result = evaluate_model(settings, model_uri, precision=precision)  # type: ignore[arg-type]
    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(f"model {result.model_uri} (version {result.model_version}), run {result.run_id}")
    header = f"{'dataset':10s} {'n':>5s} {'macroF1':>8s} {'base':>6s} {'acc':>6s} "
    header += f"{'F1 S/N/R':>17s} {'AUROC':>6s} {'p50 ms':>7s} {'p95 ms':>7s}"
    typer.echo(header)
    for name, ds in result.datasets.items():
        m, lat = ds.metrics, ds.latency_ms
        per_class = "/".join(f"{m.get(f'f1_{x}', 0):.2f}" for x in ("SUPPORT", "NEI", "REFUTE"))
        typer.echo(
            f"{name:10s} {ds.examples:5d} {m['f1_macro']:8.3f} {ds.baseline['f1_macro']:6.3f} "
            f"{m['accuracy']:6.3f} {per_class:>17s} {m.get('auroc_macro', float('nan')):6.3f} "
            f"{lat.get('p50', float('nan')):7.1f} {lat.get('p95', float('nan')):7.1f}"
        )
    typer.echo(f"mean macro F1 {result.mean_f1_macro:.3f}")


def register(app: typer.Typer) -> None:
    """Add the model commands to the root app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
