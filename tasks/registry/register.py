"""MLflow tracking and registry helpers for the verifier (aliases, never stages).

A logged verifier is a pyfunc model (:class:`tasks.inference.pyfunc.ClaimVerifierPyfunc`)
whose ``artifacts/hf_model`` folder is a Hugging Face ``save_pretrained`` folder with a
``citeops.json`` meta file; :func:`tasks.inference.predictor.load_verifier` reads it by
``models:/<name>/<version>``, ``models:/<name>@<alias>`` or the logged model URI.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeops.configs.settings import load_settings
from citeops.tasks.classifier.artifact import HF_DIR_NAME
from citeops.tasks.data.multivers import LABELS
from citeops.tasks.errors import CiteopsError
from citeops.tasks.registry.export import EXPORTABLE_TAG, export_with_parity
from citeops.tasks.tracking import ensure_experiment, mlflow_client, require_fluent_tracking

if TYPE_CHECKING:
    from citeops.configs.settings import Settings
    from mlflow import MlflowClient

MODEL_NAME = "model"  # the logged model's name inside a run


class RegistryError(CiteopsError):
    """A registered model, version or alias does not exist or cannot be changed."""


@dataclass(frozen=True)
class RegisteredModel:
    """Where a logged model is: its own URI, the registry URI of its version, the run."""

    model_uri: str  # models:/<name>/<version>
    version: str
    run_id: str
    logged_model_uri: str  # models:/m-<id> (MLflow 3 logged model)


def client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking and registry URI (no process state)."""
    return mlflow_client(settings)


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc model (explicit: MLflow's inference adds torchvision)."""
    from importlib.metadata import version

    pins = ["torch", "transformers", "mlflow", "pandas", "numpy", "tokenizers"]
    return [f"{name}=={version(name).split('+')[0]}" for name in pins]


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", "claim"), ColSpec("string", "evidence")])
    outputs = Schema([ColSpec("string", "label")] + [ColSpec("float", f"p_{x}") for x in LABELS])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_verifier(folder: Path, name: str = MODEL_NAME, settings: Settings | None = None) -> str:
    """Log a ``save_pretrained`` folder as a pyfunc model in the active run; its URI.

    The logged folder also carries an ONNX export of the classifier and its parity report
    against PyTorch fp32 (:func:`citeops.tasks.registry.export.export_with_parity`, made on
    a copy: ``folder`` is not changed); the report is logged to the run (metrics
    ``onnx_*``, ``onnx_parity.json``, tag ``citeops.onnx_exportable``). A model that does
    not export or fails parity is still logged, marked not exportable (PyTorch serves it).
    ``settings`` default: :func:`citeops.configs.settings.load_settings`.
    """
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="citeops-export-") as tmp:
        copy = Path(shutil.copytree(folder, Path(tmp) / HF_DIR_NAME))
        log_onnx_export(copy, settings)
        return _log_pyfunc(copy, name)


def log_onnx_export(folder: Path, settings: Settings | None = None) -> Any:
    """Export ``folder``'s classifier to ONNX in place, check parity, and log the report
    to the active MLflow run; the :class:`~citeops.tasks.registry.export.ParityReport`."""
    import mlflow

    report = export_with_parity(folder, settings or load_settings())
    if mlflow.active_run() is not None:
        mlflow.set_tag(EXPORTABLE_TAG, str(report.exportable).lower())
        mlflow.log_metrics(report.mlflow_metrics())
        mlflow.log_dict(report.to_meta(), "onnx_parity.json")
    return report


def _log_pyfunc(folder: Path, name: str) -> str:
    import mlflow
    from citeops.tasks.inference.pyfunc import ClaimVerifierPyfunc

    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)  # the notice that a Python object is cloudpickled
    try:
        with warnings.catch_warnings():  # type-hint notices
            warnings.simplefilter("ignore")
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=ClaimVerifierPyfunc(),
                artifacts={HF_DIR_NAME: str(folder)},
                pip_requirements=pip_requirements(),
                signature=_signature(),
            )
    finally:
        pyfunc_log.setLevel(level)
    return info.model_uri


def register_version(
    settings: Settings,
    logged_model_uri: str,
    run_id: str,
    description: str | None = None,
    tags: dict[str, str] | None = None,
) -> RegisteredModel:
    """Register ``logged_model_uri`` as a new version of ``settings.mlflow.registered_model``
    (with ``description`` and ``tags``), through the client: no process-wide MLflow state.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    name = settings.mlflow.registered_model
    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    model_id = _logged_model_id(logged_model_uri)
    version = mlflow_client.create_model_version(
        name, logged_model_uri, run_id, tags=tags, description=description, model_id=model_id
    )
    if model_id:
        _link_logged_model(mlflow_client, model_id, name, str(version.version))
    _copy_export_tag(mlflow_client, name, str(version.version), run_id)
    return RegisteredModel(
        f"models:/{name}/{version.version}", str(version.version), run_id, logged_model_uri
    )


def _logged_model_id(uri: str) -> str | None:
    """``m-<id>`` of an MLflow 3 logged model URI ``models:/m-<id>``, else ``None``."""
    rest = uri[len("models:/") :] if uri.startswith("models:/") else ""
    return rest if rest.startswith("m-") and "/" not in rest else None


def _link_logged_model(mlflow_client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """Name the new version on its logged model (``mlflow.modelVersions``), as
    ``mlflow.register_model`` does, so the MLflow UI links the two."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    model = mlflow_client.get_logged_model(model_id)
    known = json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
    versions = json.dumps([*known, {"name": name, "version": version}])
    mlflow_client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: versions})


def _copy_export_tag(mlflow_client: MlflowClient, name: str, version: str, run_id: str) -> None:
    """Tag the version ``citeops.onnx_exportable`` as its run was tagged at export."""

    value = mlflow_client.get_run(run_id).data.tags.get(EXPORTABLE_TAG)
    if value is not None:
        mlflow_client.set_model_version_tag(name, version, EXPORTABLE_TAG, value)


def register_folder(
    settings: Settings,
    folder: Path,
    run_name: str = "register-folder",
    alias: str | None = None,
    params: dict[str, Any] | None = None,
) -> RegisteredModel:
    """Log an existing ``save_pretrained`` folder as a new registered version, no training.

    Opens its own run in the configured experiment; sets ``alias`` on the version if given.
    """
    import mlflow

    require_fluent_tracking(settings)
    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        if params:
            mlflow.log_params(params)
        logged = log_verifier(Path(folder), settings=settings)
    registered = register_version(settings, logged, run.info.run_id)
    if alias:
        set_alias(settings, registered.version, alias)
    return registered


def set_alias(settings: Settings, version: str | int, alias: str) -> None:
    """Point ``alias`` of the registered model at ``version`` (moves it if it exists)."""
    from mlflow.exceptions import MlflowException

    try:
        client(settings).set_registered_model_alias(
            settings.mlflow.registered_model, alias, str(version)
        )
    except MlflowException as error:
        raise RegistryError(
            f"cannot set alias {alias!r} of {settings.mlflow.registered_model!r} to version "
            f"{version}: {error.message}"
        ) from None


def get_version_by_alias(settings: Settings, alias: str) -> str | None:
    """The version the alias points at, or ``None`` when the alias (or model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        found = client(settings).get_model_version_by_alias(settings.mlflow.registered_model, alias)
    except MlflowException:
        return None
    return str(found.version)


def delete_alias(settings: Settings, alias: str) -> None:
    """Remove ``alias`` (no error when it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        client(settings).delete_registered_model_alias(settings.mlflow.registered_model, alias)
    except MlflowException:
        pass


def require_version(settings: Settings, version: str | int) -> None:
    """Raise :class:`RegistryError` unless ``version`` of the registered model exists."""
    from mlflow.exceptions import MlflowException

    name = settings.mlflow.registered_model
    try:
        client(settings).get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"version {version} of {name!r} is not registered") from None
