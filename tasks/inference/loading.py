"""Loading a verifier by MLflow URI or folder, on the runtime serving uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from citeops.tasks.classifier.artifact import ModelLoadError, find_hf_dir
from citeops.tasks.inference.cache import EvidenceCache
from citeops.tasks.inference.predictor import ClaimVerifier, Precision
from citeops.tasks.inference.runtimes import apply_runtime
from citeops.tasks.tracking import mlflow_client

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from citeops.configs.settings import Settings


def registered_version(model_uri: str, settings: Settings) -> ModelVersion | None:
    """The registered version behind ``models:/name/version`` or ``models:/name@alias``,
    read through the settings' client; ``None`` for any other URI. MLflow's exceptions
    pass through."""
    if not model_uri.startswith("models:/"):
        return None

    name_part = model_uri[len("models:/") :].strip("/")
    if "@" in name_part:
        name, alias = name_part.split("@", 1)
        return mlflow_client(settings).get_model_version_by_alias(name, alias)
    name, _, version = name_part.partition("/")
    if not version.isdigit():  # a logged model (models:/m-<id>) or a stage name
        return None
    return mlflow_client(settings).get_model_version(name, version)


def resolve_version(model_uri: str, settings: Settings) -> str | None:
    """The version number behind a registered model URI (see :func:`registered_version`)."""
    found = registered_version(model_uri, settings)
    return None if found is None else str(found.version)


def load_verifier(
    model_uri: str,
    settings: Settings,
    precision: Precision = "fp32",
    dst: Path | None = None,
    runtime: str | None = None,
) -> ClaimVerifier:
    """Load a model by MLflow URI (``models:/name/1``, ``models:/name@champion``,
    ``runs:/<id>/model``) or by a local folder path. An MLflow model is downloaded into
    ``dst``, else into a temporary folder that is removed once it is loaded (a serving
    process deploys many models: none of their downloads stays behind).

    ``runtime`` None: PyTorch at ``precision``. Otherwise torch | onnxruntime | openvino |
    auto, each at its configured precision (``serve.precision``, ``serve.*_precision``),
    as serving runs it (:func:`citeops.tasks.inference.runtimes.apply_runtime`), a
    siamese model with its evidence cache (:func:`with_evidence_cache`).

    Raises:
        ModelLoadError: the URI does not resolve or the files are not a model.
        RuntimeUnavailable: the runtime asked for is not installed.
    """
    if runtime is not None:
        precision = "fp32"  # the runtime's precision comes from the settings
    local = Path(model_uri).expanduser()
    if "://" not in model_uri and not model_uri.startswith(("models:", "runs:")):
        if not local.exists():
            raise ModelLoadError(f"{model_uri}: no such model folder")
        folder = find_hf_dir(local)
        loaded = ClaimVerifier.from_dir(folder, precision, model_uri=model_uri, folder=folder)
        return _on_runtime(loaded, runtime, settings)
    if dst is None:  # a download of its own, removed once the model is in memory
        import tempfile

        with tempfile.TemporaryDirectory(prefix="citeops-model-") as tmp:
            return _download_and_load(model_uri, settings, precision, Path(tmp), runtime)
    return _download_and_load(model_uri, settings, precision, dst, runtime)


def _on_runtime(verifier: ClaimVerifier, runtime: str | None, settings: Settings) -> ClaimVerifier:
    """``verifier`` given ``runtime`` while its folder (and ONNX export) still exists."""
    if runtime is None:
        return verifier

    return with_evidence_cache(apply_runtime(verifier, runtime, settings), settings)


def with_evidence_cache(verifier: ClaimVerifier, settings: Settings) -> ClaimVerifier:
    """Give a siamese ``verifier`` an evidence cache of its own, bounded by
    ``serve.evidence_cache_mb`` (0: none); other models are returned as they are."""
    megabytes = settings.serve.evidence_cache_mb
    if verifier.siamese and megabytes > 0:
        verifier.evidence_cache = EvidenceCache(int(megabytes * 1024 * 1024))
    return verifier


def _download_and_load(
    model_uri: str, settings: Settings, precision: Precision, dst: Path, runtime: str | None = None
) -> ClaimVerifier:
    """Download the MLflow model ``model_uri`` into ``dst`` and load it from there (the
    store named by the settings, passed explicitly: no process-wide MLflow state)."""
    try:
        root, version = download_model(model_uri, settings, dst)
    except Exception as error:  # mlflow raises several types for an unknown URI
        raise ModelLoadError(f"{model_uri}: cannot be resolved ({error})") from None
    folder = find_hf_dir(root)
    loaded = ClaimVerifier.from_dir(
        folder, precision, model_uri=model_uri, model_version=version, folder=folder
    )
    return _on_runtime(loaded, runtime, settings)


def download_model(model_uri: str, settings: Settings, dst: Path) -> tuple[Path, str | None]:
    """Download ``model_uri`` from the settings' store into ``dst``: the local root and
    the registered version (``None`` when the URI names none). A registered model URI is
    resolved through the client to its source; the URIs are passed explicitly, never made
    the process default. MLflow's exceptions pass through."""
    import mlflow

    found = registered_version(model_uri, settings)
    uri = str(settings.mlflow.tracking_uri)
    root = mlflow.artifacts.download_artifacts(
        artifact_uri=artifact_location(found.source if found else model_uri, settings),
        dst_path=str(dst),
        tracking_uri=uri,
        registry_uri=uri,
    )
    return Path(root), None if found is None else str(found.version)


def artifact_location(source: str, settings: Settings) -> str:
    """Where the files of ``source`` are: an MLflow 3 logged model (``models:/m-<id>``)
    is looked up through the settings' client (MLflow's own resolution of such a URI
    reads the process-wide tracking URI); any other URI is returned as it is."""
    if not source.startswith("models:/m-"):
        return source

    model_id = source[len("models:/") :].split("/")[0]
    return mlflow_client(settings).get_logged_model(model_id).artifact_location
