"""What the engineer reviewing MLflow reads: runs named by what they were, tags linking a
version's training run, validation run and promotion record, and a version description
kept up to date section by section (trained, gate, release).

Everything goes through the settings' client (:func:`citeops.tasks.tracking.mlflow_client`);
a registered version that does not exist is left alone (nothing to describe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citeops.tasks.tracking import mlflow_client

if TYPE_CHECKING:
    from citeops.configs.settings import Settings

TRAINING_RUN_TAG = "citeops.training_run_id"
VALIDATION_RUN_TAG = "citeops.validation_run_id"
PROMOTION_TAG = "citeops.promotion_id"
VERSION_TAG = "citeops.model_version"
GATE_TAG = "citeops.gate"
OUTCOME_TAG = "citeops.outcome"


def version_label(model_uri: str | None) -> str:
    """``v3`` for ``models:/<name>/3``, ``@champion`` for an alias URI, ``none`` for no
    model, else the URI itself: how a run name refers to a model."""
    if not model_uri:
        return "none"
    if not model_uri.startswith("models:/"):
        return model_uri
    rest = model_uri[len("models:/") :].strip("/")
    if "@" in rest:
        return "@" + rest.split("@", 1)[1]
    _, _, version = rest.partition("/")
    return f"v{version}" if version.isdigit() else model_uri


def name_run(
    settings: Settings, run_id: str, name: str, tags: dict[str, str] | None = None
) -> None:
    """Rename the run ``name`` (a name only known once the run ended, e.g. its version)
    and set ``tags`` on it."""
    mlflow_client(settings).update_run(run_id, name=name)
    tag_run(settings, run_id, tags or {})


def tag_run(settings: Settings, run_id: str, tags: dict[str, str]) -> None:
    """Set ``tags`` on the run ``run_id``."""
    client = mlflow_client(settings)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def tag_version(settings: Settings, version: str, tags: dict[str, str]) -> None:
    """Set ``tags`` on ``version`` of the registered model."""
    client = mlflow_client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(settings.mlflow.registered_model, str(version), key, value)


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    """The tags of ``version`` of the registered model."""
    found = mlflow_client(settings).get_model_version(
        settings.mlflow.registered_model, str(version)
    )
    return dict(found.tags)


def set_section(settings: Settings, version: str, title: str, body: str) -> str:
    """Replace (or append) the ``## title`` section of the version's description with
    ``body``, keeping the other sections in their order; the new description."""
    client = mlflow_client(settings)
    name = settings.mlflow.registered_model
    current = client.get_model_version(name, str(version)).description or ""
    sections = split_sections(current)
    sections[title] = body.strip()
    text = "\n\n".join(f"## {head}\n\n{text}".rstrip() for head, text in sections.items())
    client.update_model_version(name, str(version), description=text)
    return text


def split_sections(description: str) -> dict[str, str]:
    """``{title: body}`` of a description made of ``## title`` sections, in order (text
    before the first title, if any, under the title ``Notes``)."""
    sections: dict[str, str] = {}
    title, lines = "Notes", []
    for line in description.splitlines():
        if line.startswith("## "):
            if "".join(lines).strip():
                sections[title] = "\n".join(lines).strip()
            title, lines = line[3:].strip(), []
        else:
            lines.append(line)
    if "".join(lines).strip():
        sections[title] = "\n".join(lines).strip()
    return sections
