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
    from citeops.tasks.train.fit import train_model

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
    runtime: str | None = typer.Option(
        None,
        help="torch | onnxruntime | openvino | auto: evaluate on this runtime at its serving "
        "precision (serve.*precision), as the endpoint serves; --precision is then unused. "
        "Default: PyTorch at --precision.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Macro F1 (95 % bootstrap interval), per-class F1, confusion matrices, AUROC and
    latency on the test sets, beside the majority baseline; logged to MLflow."""
    from citeops.tasks.validate.evaluate import evaluate_model

    settings = settings_from(evaluate={"max_examples": max_examples})
    if precision not in ("fp32", "bf16", "int8"):
        raise typer.BadParameter("choose fp32, bf16 or int8", param_hint="--precision")
    if runtime not in (None, "torch", "onnxruntime", "openvino", "auto"):
        raise typer.BadParameter(
            "choose torch, onnxruntime, openvino or auto", param_hint="--runtime"
        )
    info(
        f"evaluating {model_uri} on {', '.join(settings.evaluate.datasets)} "
        f"({settings.evaluate.split})"
    )
    result = evaluate_model(settings, model_uri, precision=precision, runtime=runtime)  # type: ignore[arg-type]
    if as_json:
        print_json(result.to_dict())
        return
    typer.echo(result.text_report())


def register(app: typer.Typer) -> None:
    """Add the model commands to the root app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
