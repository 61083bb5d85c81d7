"""The training flow: fine-tune a candidate and register it (keyword arguments in, dict out).

Deployed with the quarterly schedule (``settings.trigger.quarterly_cron``); any keyword
argument overrides the matching ``train`` setting for this run only.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task


@task(name="train-model", retries=0)
def train_candidate(overrides: dict[str, Any]) -> dict[str, Any]:
    """Thin task over :func:`tasks.model.train.train_model` with ``train`` overrides."""
    from citeops.configs.settings import load_settings
    from citeops.tasks.model.train import train_model

    base_model = overrides.pop("base_model", None)
    settings = load_settings(model={"base_model": base_model}, train=overrides)
    return train_model(settings, progress=False).to_dict()


@flow(name="train")
def train(
    base_model: str | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    max_examples: int | None = None,
    max_length: int | None = None,
    seed: int | None = None,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train and register a new model version; returns the TrainResult as a dict."""
    overrides = {
        "base_model": base_model,
        "epochs": epochs,
        "max_steps": max_steps,
        "max_examples": max_examples,
        "max_length": max_length,
        "seed": seed,
        "learning_rate": learning_rate,
    }
    return train_candidate(overrides)
