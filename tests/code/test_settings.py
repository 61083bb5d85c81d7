from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from citeops.configs.settings import (
    DeprecatedSettingWarning,
    Settings,
    SettingsError,
    load_settings,
)
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


# ---- settings where they are used, old names for one release ------------------------

MOVED = [
    ("serve", "endpoints", ["http://a:8000", "http://b:8000"], "promote", "endpoints"),
    ("serve", "parity_pairs", 9, "registry", "parity_pairs"),
    ("serve", "parity_max_prob_diff", 0.002, "registry", "parity_max_prob_diff"),
    ("gate", "bootstrap_resamples", 300, "stats", "bootstrap_resamples"),
    ("gate", "seed", 7, "stats", "bootstrap_seed"),
]


def _value(settings: Settings, section: str, name: str) -> Any:
    value = getattr(getattr(settings, section), name)
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(("old", "name", "value", "new", "new_name"), MOVED)
def test_an_old_name_still_works_with_a_warning(
    old: str, name: str, value: Any, new: str, new_name: str
) -> None:
    with pytest.warns(DeprecatedSettingWarning, match=rf"{old}\.{name} .*use setting {new}\."):
        settings = load_settings(**{old: {name: value}})
    assert _value(settings, new, new_name) == value
    assert name not in type(getattr(settings, old)).model_fields


@pytest.mark.parametrize(("old", "name", "value", "new", "new_name"), MOVED)
def test_an_old_environment_variable_still_works_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, old: str, name: str, value: Any, new: str, new_name: str
) -> None:
    old_env = f"CITEOPS_{old.upper()}__{name.upper()}"
    monkeypatch.setenv(old_env, json.dumps(value))
    with pytest.warns(DeprecatedSettingWarning, match=old_env):
        settings = load_settings()
    assert _value(settings, new, new_name) == value


@pytest.mark.parametrize(("old", "name", "value", "new", "new_name"), MOVED)
def test_new_names_and_their_environment_variables(
    monkeypatch: pytest.MonkeyPatch, old: str, name: str, value: Any, new: str, new_name: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedSettingWarning)
        assert _value(load_settings(**{new: {new_name: value}}), new, new_name) == value
        monkeypatch.setenv(f"CITEOPS_{new.upper()}__{new_name.upper()}", json.dumps(value))
        assert _value(load_settings(), new, new_name) == value


def test_the_profiles_use_only_current_names() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedSettingWarning)
        for profile in ("local", "gpu", "production", "test"):
            load_settings(profile=profile)
    assert load_settings(profile="test").registry.parity_pairs == 8


def test_gpu_profile_is_the_full_length_bf16_recipe_on_every_visible_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The GPU recipe validates and yields a trainer configuration on a CPU machine: one
    DDP rank per visible GPU (here, two pretended), full length, bf16."""
    from citeops.tasks.train import ddp
    from citeops.tasks.train.fit import resolve_precision, trainer_kwargs

    settings = load_settings(profile="gpu")
    train, local = settings.train, load_settings(profile="local").train
    assert settings.model.max_length == train.max_length == 512
    assert train.epochs > local.epochs and train.batch_size > local.batch_size
    assert train.accelerator == "gpu" and train.devices == "auto"
    assert settings.model.head == "siamese" and train.tune_class_offsets
    assert train.augment_self_support > 0
    assert settings.gate.behaviour_min_pass >= 0.8 and settings.gate.class_f1_floor >= 0.05
    precision = resolve_precision(train.precision, train.accelerator)
    assert precision == "bf16-mixed"
    monkeypatch.setattr(ddp, "visible_gpus", lambda: 2)
    kwargs = trainer_kwargs(settings, precision, callbacks=[])
    assert kwargs["devices"] == ddp.world_size(settings) == 2
    assert (kwargs["accelerator"], kwargs["strategy"]) == ("gpu", "ddp")
    assert kwargs["max_epochs"] == train.epochs and kwargs["precision"] == "bf16-mixed"
    monkeypatch.setattr(ddp, "visible_gpus", lambda: 1)
    assert trainer_kwargs(settings, precision, callbacks=[])["devices"] == 1
    assert settings.admin_secret()  # one machine, like local: a local admin token


def test_an_old_name_keeps_its_sources_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old environment variable still beats the profile; a keyword override still
    beats the environment; within one source the new name wins."""
    monkeypatch.setenv("CITEOPS_SERVE__PARITY_PAIRS", "5")  # the test profile says 8
    with pytest.warns(DeprecatedSettingWarning):
        assert load_settings().registry.parity_pairs == 5
        assert load_settings(serve={"parity_pairs": 4}).registry.parity_pairs == 4
    monkeypatch.delenv("CITEOPS_SERVE__PARITY_PAIRS")
    with pytest.warns(DeprecatedSettingWarning, match="serve.parity_pairs .* is ignored"):
        both = load_settings(serve={"parity_pairs": 4}, registry={"parity_pairs": 3})
    assert both.registry.parity_pairs == 3


def test_a_bad_value_under_an_old_name_names_the_new_setting() -> None:
    with pytest.warns(DeprecatedSettingWarning), pytest.raises(SettingsError) as caught:
        load_settings(gate={"bootstrap_resamples": 10})
    assert "setting stats.bootstrap_resamples (CITEOPS_STATS__BOOTSTRAP_RESAMPLES)" in str(
        caught.value
    )


def test_removed_settings_are_ignored_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(DeprecatedSettingWarning, match="model.labels .* was removed"):
        settings = load_settings(model={"labels": ["SUPPORT", "NEI", "REFUTE"]})
    assert "labels" not in type(settings.model).model_fields
    with pytest.warns(DeprecatedSettingWarning, match="benchmarks/settings.py"):
        load_settings(bench={"ingest_lines": 5})
    monkeypatch.setenv("CITEOPS_BENCH__INGEST_LINES", "5")  # read by the benchmarks only
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedSettingWarning)
        load_settings()


def test_bench_settings_are_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from citeops.benchmarks.settings import load_bench_settings

    monkeypatch.setenv("CITEOPS_BENCH__DRIFT_ROWS", "500")
    bench = load_bench_settings(ingest_lines=5, train_target_f1=None)
    assert (bench.ingest_lines, bench.drift_rows, bench.train_target_f1) == (5, 500, 0.40)
    monkeypatch.setenv("CITEOPS_BENCH__DRIFT_ROWS", "3")
    with pytest.raises(SettingsError) as caught:
        load_bench_settings()
    assert str(caught.value).startswith("setting bench.drift_rows (CITEOPS_BENCH__DRIFT_ROWS):")


def test_endpoints_default_to_the_local_one() -> None:
    assert load_settings().serving_endpoints == ("http://127.0.0.1:8000",)
    many = load_settings(promote={"endpoints": ["http://a:1", "http://b:2"]})
    assert many.serving_endpoints == ("http://a:1", "http://b:2")


def test_the_local_admin_secret_is_resolved_once(tmp_path: Path) -> None:
    settings = load_settings(profile="local", home=tmp_path)
    token = settings.admin_secret()
    token_file = tmp_path / "state" / "admin-token"
    token_file.unlink()  # read once: later calls do not touch the file
    assert settings.admin_secret() == token
    assert not token_file.exists()
    assert [p.name for p in token_file.parent.iterdir()] == []  # no draft left behind
    fresh = load_settings(profile="local", home=tmp_path)
    assert fresh.admin_secret() != token  # a new settings object resolves anew
    assert fresh.model_copy(update={"admin_token": SecretStr("given")}).admin_secret() == "given"
