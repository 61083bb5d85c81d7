from __future__ import annotations

from pathlib import Path

import pytest

from citeops.configs.settings import SettingsError, load_settings
from citeops.flows.cli import main


def test_profile_env_and_override_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITEOPS_TRAIN__EPOCHS", "4")
    settings = load_settings(train={"batch_size": 3})
    assert settings.profile == "test"
    assert settings.model.base_model == "tiny"  # from profiles/test.yaml
    assert settings.train.epochs == 4  # env beats the profile (which says 1)
    assert settings.train.batch_size == 3  # keyword override beats everything


def test_state_paths_derive_from_home(citeops_env: Path) -> None:
    settings = load_settings()
    assert settings.home == citeops_env
    assert settings.store_url == f"sqlite:///{citeops_env / 'citeops.db'}"
    assert settings.log_root == str(citeops_env / "logs")
    assert settings.mlflow.tracking_uri.startswith("sqlite:///" + str(citeops_env))


def test_local_profile_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITEOPS_PROFILE", "local")
    settings = load_settings()
    assert settings.model.base_model == "minilm"
    assert settings.mlflow.registered_model == "claim-verifier"
    assert settings.trigger.min_new_feedback == 100


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("CITEOPS_TRAIN__EPOCHS", "0", "setting train.epochs (CITEOPS_TRAIN__EPOCHS)"),
        ("CITEOPS_SERVE__PORT", "not-a-port", "setting serve.port (CITEOPS_SERVE__PORT)"),
        ("CITEOPS_LOG_ROOT", "ftp://x/y", "setting log_root (CITEOPS_LOG_ROOT)"),
        ("CITEOPS_PROFILE", "staging", "unknown profile 'staging'"),
    ],
)
def test_bad_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_cli_reports_bad_setting_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITEOPS_TRAIN__LEARNING_RATE", "-1")
    with pytest.raises(SystemExit) as done:
        main(["data", "stats", "--json"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: setting train.learning_rate")
    assert "Traceback" not in err
