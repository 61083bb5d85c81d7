"""The one place where every path, URI, threshold and hyper-parameter of citeops is named.

Settings are layered, highest priority first:

1. keyword arguments to :func:`load_settings` (what the CLI flags set),
2. ``CITEOPS_*`` environment variables (nested with ``__``: ``CITEOPS_TRAIN__EPOCHS=3``),
3. the YAML profile chosen by ``CITEOPS_PROFILE`` (``local``, ``gpu``, ``production``,
   ``test``),
4. the defaults of the sections.

Each section lives beside the others of its concern (``configs/model.py``,
``serving.py``, ``data.py``, ``lifecycle.py``, ``stack.py``) and is re-exported here;
old setting names are migrated, with a warning, by ``configs/legacy.py``.

Derived paths (data folder, log root, databases, MLflow store) default to places under
``home`` (``CITEOPS_HOME``) so that everything the tool writes lives in one folder.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from citeops.configs.base import (
    ENV_PREFIX,
    SettingsError,
    describe,
    drop_none,
    env_name,
)
from citeops.configs.data import DriftSettings, IngestSettings
from citeops.configs.k8s import K8sSettings
from citeops.configs.legacy import DeprecatedSettingWarning, migrate
from citeops.configs.lifecycle import (
    GateSettings,
    PromoteSettings,
    RegistrySettings,
    RetrainSettings,
    StatsSettings,
    TriggerSettings,
)
from citeops.configs.model import (
    EvaluateSettings,
    EvidenceSelectionSettings,
    ModelSettings,
    SearchDimension,
    TrainSettings,
    TuneSettings,
)
from citeops.configs.serving import (
    RUNTIME_BATCHING_DEFAULTS,
    SERVING_RUNTIMES,
    BatchingSettings,
    FeedbackSettings,
    ServeSettings,
    parse_api_keys,
)
from citeops.configs.stack import CostSettings, MlflowSettings, S3Settings, StackSettings

__all__ = [
    "RUNTIME_BATCHING_DEFAULTS",
    "SERVING_RUNTIMES",
    "BatchingSettings",
    "CostSettings",
    "DeprecatedSettingWarning",
    "DriftSettings",
    "EvaluateSettings",
    "EvidenceSelectionSettings",
    "FeedbackSettings",
    "GateSettings",
    "IngestSettings",
    "MlflowSettings",
    "ModelSettings",
    "PromoteSettings",
    "RegistrySettings",
    "RetrainSettings",
    "S3Settings",
    "SearchDimension",
    "ServeSettings",
    "Settings",
    "SettingsError",
    "StackSettings",
    "StatsSettings",
    "TrainSettings",
    "TriggerSettings",
    "TuneSettings",
    "load_settings",
    "parse_api_keys",
]

PROFILES_DIR = Path(__file__).parent / "profiles"
PROFILES = ("local", "gpu", "production", "test")
ADMIN_TOKEN_FILE = "admin-token"


class Settings(BaseSettings):
    """All of citeops' configuration. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=True,
    )

    profile: Literal["local", "gpu", "production", "test"] = "local"
    """Settings profile: configs/profiles/<profile>.yaml."""
    home: Path = Path(".citeops")
    """Everything the tool writes: stores, MLflow, logs, reports, state."""
    data_dir: Path | None = None
    """Folder holding scifact/ and citint/ (None: <home>/data)."""
    data_base_url: str = "https://raw.githubusercontent.com/jedick/MLE-capstone-project/main/data"
    """Where `citeops data fetch` downloads the datasets from."""
    log_root: str | None = None
    """Query and feedback logs: a local folder or s3://bucket/prefix (None: <home>/logs)."""
    store_url: str | None = None
    """SQLAlchemy URL of the curated store (None: SQLite under home)."""
    admin_token: SecretStr | None = None
    """Secret, environment only: the serving endpoints' admin bearer token (None: in the
    local profile a random one kept under <home>/state; elsewhere admin routes are off)."""

    model: ModelSettings = ModelSettings()
    train: TrainSettings = TrainSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    stats: StatsSettings = StatsSettings()
    registry: RegistrySettings = RegistrySettings()
    mlflow: MlflowSettings = MlflowSettings()
    s3: S3Settings = S3Settings()
    serve: ServeSettings = ServeSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    ingest: IngestSettings = IngestSettings()
    drift: DriftSettings = DriftSettings()
    trigger: TriggerSettings = TriggerSettings()
    retrain: RetrainSettings = RetrainSettings()
    promote: PromoteSettings = PromoteSettings()
    stack: StackSettings = StackSettings()
    gate: GateSettings = GateSettings()
    tune: TuneSettings = TuneSettings()
    k8s: K8sSettings = K8sSettings()
    cost: CostSettings = CostSettings()

    _admin_secret: tuple[tuple[Any, ...], str | None] | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        """Old names given straight to the model (``Settings.model_validate``); the
        sources are migrated one by one in ``settings_customise_sources``."""
        return migrate(data) if isinstance(data, dict) else data

    @field_validator("home", "data_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("log_root")
    @classmethod
    def _log_root_scheme(cls, value: str | None) -> str | None:
        if value and "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError("must be a local folder or s3://bucket/prefix")
        return value

    @field_validator("feedback")
    @classmethod
    def _credentials_in_production(
        cls, value: FeedbackSettings, info: ValidationInfo
    ) -> FeedbackSettings:
        if info.data.get("profile") == "production" and not value.require_credentials:
            raise ValueError(
                "require_credentials (CITEOPS_FEEDBACK__REQUIRE_CREDENTIALS) must be on in the "
                "production profile: anonymous feedback would drive retraining"
            )
        return value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        home = self.home
        if self.data_dir is None:
            self.data_dir = home / "data"
        if self.log_root is None:
            self.log_root = str(home / "logs")
        if self.store_url is None:
            self.store_url = f"sqlite:///{home / 'citeops.db'}"
        if self.mlflow.tracking_uri is None:
            self.mlflow.tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        if self.mlflow.artifact_location is None:
            self.mlflow.artifact_location = (home / "mlartifacts").as_uri()
        if self.mlflow.backend_store_uri is None:
            self.mlflow.backend_store_uri = self.mlflow.tracking_uri
        if self.mlflow.artifacts_destination is None:
            self.mlflow.artifacts_destination = self.mlflow.artifact_location
        if self.stack.prefect_api_url is None:
            self.stack.prefect_api_url = (
                f"http://{self.stack.prefect_host}:{self.stack.prefect_port}/api"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        profile = _ProfileSource(settings_cls, init_settings)
        return tuple(_Migrated(settings_cls, s) for s in (init_settings, env_settings, profile))

    # ---- derived values used across stages -------------------------------------------
    @property
    def state_dir(self) -> Path:
        """Folder for PIDs, server logs and the serving slot state."""
        return self.home / "state"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def admin_secret(self) -> str | None:
        """The admin bearer token of the serving endpoints: ``admin_token``
        (``CITEOPS_ADMIN_TOKEN``); else, in the one-machine ``local`` and ``gpu`` profiles
        only, a random token kept in ``<home>/state/admin-token`` (mode 0600), made on
        first use, so that the local endpoint and the promotion flow share it with no
        set-up. Other profiles: ``None``.

        Resolved once per settings object (the file is read or made at the first call,
        never again), so calling it on every request costs nothing."""
        token = self.admin_token.get_secret_value() if self.admin_token is not None else None
        key = (token, self.profile, self.state_dir)
        if self._admin_secret is None or self._admin_secret[0] != key:
            secret = token
            if secret is None and self.profile in ("local", "gpu"):
                secret = _local_admin_token(self.state_dir / ADMIN_TOKEN_FILE)
            self._admin_secret = (key, secret)
        return self._admin_secret[1]

    @property
    def serving_endpoints(self) -> tuple[str, ...]:
        """Base URLs of the serving replicas (``promote.endpoints``, else the local one)."""
        return self.promote.endpoints or (f"http://{self.serve.host}:{self.serve.port}",)

    @property
    def is_s3_log_root(self) -> bool:
        return bool(self.log_root and self.log_root.startswith("s3://"))


def _local_admin_token(path: Path) -> str:
    """The token in ``path``, made first (mode 0600) when there is none. The file appears
    whole or not at all (written aside, then hard-linked into place), so a process that
    races another never reads a half-written token."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=path.parent, prefix=".admin-token-")
        try:
            with os.fdopen(fd, "w") as handle:  # mkstemp makes it 0600
                handle.write(secrets.token_urlsafe(32))
            os.link(draft, path)
        except FileExistsError:  # another process made it first: theirs is the token
            pass
        finally:
            os.unlink(draft)
    return path.read_text().strip()


class _Migrated(PydanticBaseSettingsSource):
    """One settings source with its old setting names moved to the new ones
    (``configs/legacy.py``); an environment variable's JSON text is decoded as the new
    field's type would be."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._inner = inner
        self.__name__ = type(inner).__name__

    def _set_current_state(self, state: dict[str, Any]) -> None:
        super()._set_current_state(state)
        self._inner._set_current_state(state)

    def _set_settings_sources_data(self, states: dict[str, dict[str, Any]]) -> None:
        super()._set_settings_sources_data(states)
        self._inner._set_settings_sources_data(states)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        decode = self._decode if isinstance(self._inner, EnvSettingsSource) else None
        return migrate(self._inner(), decode)

    def _decode(self, section: str, name: str, value: Any) -> Any:
        field = Settings.model_fields[section].annotation.model_fields[name]  # type: ignore[union-attr]
        if isinstance(value, str) and self._inner.field_is_complex(field):
            return self._inner.decode_complex_value(name, field, value)
        return value


class _ProfileSource(PydanticBaseSettingsSource):
    """Reads ``configs/profiles/<profile>.yaml``; the profile comes from kwargs or the env."""

    def __init__(self, settings_cls: type[BaseSettings], init_settings: Any) -> None:
        super().__init__(settings_cls)
        self._init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {}) or {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        profile = self._init_kwargs.get("profile") or os.environ.get(f"{ENV_PREFIX}PROFILE")
        profile = profile or "local"
        if profile not in PROFILES:
            raise SettingsError(
                f"setting profile (CITEOPS_PROFILE): unknown profile {profile!r}; "
                f"choose one of {', '.join(PROFILES)}"
            )
        path = PROFILES_DIR / f"{profile}.yaml"
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise SettingsError(f"settings profile {path}: top level must be a mapping")
        _refuse_secrets(data, path)
        data.setdefault("profile", profile)
        return data


SECRET_SETTINGS = (("admin_token",), ("feedback", "api_keys"), ("feedback", "token_secret"))


def _refuse_secrets(data: dict[str, Any], path: Path) -> None:
    """Secrets come only from the environment: a profile file that sets one is refused."""
    for loc in SECRET_SETTINGS:
        section: Any = data
        for part in loc[:-1]:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict) and section.get(loc[-1]) is not None:
            raise SettingsError(
                f"settings profile {path.name}: {'.'.join(loc)} is a secret; set it only in "
                f"the environment ({env_name(loc)}), never in a file"
            )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from overrides, environment and profile.

    ``overrides`` use the field names (nested sections as dicts, e.g.
    ``train={"epochs": 1}``); ``None`` values are ignored so CLI options can pass through.
    Old setting names still work for one release, with a
    :class:`~citeops.configs.legacy.DeprecatedSettingWarning`.

    Raises:
        SettingsError: one line naming the bad setting and why it is rejected.
    """
    try:
        return Settings(**drop_none(overrides))
    except ValidationError as error:
        raise SettingsError(describe(error)) from None
