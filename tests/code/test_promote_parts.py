"""Promotion parts without servers: bake figures from /metrics text, the local admin
token, and the training settings that reach Lightning's Trainer."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from citeops.configs.settings import load_settings
from citeops.tasks.release.promote import Snapshot, bake_figures, p95_from_buckets

METRICS = """\
# TYPE citeops_http_requests_total counter
citeops_http_requests_total{route="/predict",status="200"} 90.0
citeops_http_requests_total{route="/predict",status="500"} 10.0
citeops_http_requests_total{route="/health",status="200"} 5.0
# TYPE citeops_http_request_duration_seconds histogram
citeops_http_request_duration_seconds_bucket{route="/predict",le="0.1"} 50.0
citeops_http_request_duration_seconds_bucket{route="/predict",le="0.5"} 96.0
citeops_http_request_duration_seconds_bucket{route="/predict",le="1.0"} 100.0
citeops_http_request_duration_seconds_bucket{route="/predict",le="+Inf"} 100.0
"""


def test_p95_is_the_bucket_bound_holding_the_95th_percentile_of_the_window() -> None:
    before = {0.1: 40.0, 0.5: 40.0, 1.0: 40.0, float("inf"): 40.0}
    after = {0.1: 50.0, 0.5: 96.0, 1.0: 100.0, float("inf"): 100.0}
    # in the window: 10 under 0.1 s, 46 more under 0.5 s, 4 under 1 s -> p95 in (0.5, 1]
    assert p95_from_buckets(before, after) == pytest.approx(1000.0)
    assert p95_from_buckets(after, after) is None  # no request in the window


def test_snapshot_parses_predict_routes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from citeops.tasks.release import promote

    class FakeResponse:
        text = METRICS

    class FakeClient:
        def get(self, url: str) -> FakeResponse:
            assert url.endswith("/metrics")
            return FakeResponse()

    snap = promote.read_snapshot(FakeClient(), "http://replica")  # type: ignore[arg-type]
    assert snap.requests == 100 and snap.errors == 10
    assert snap.buckets[0.5] == 96.0


def test_bake_names_the_broken_threshold() -> None:
    settings = load_settings(promote={"max_error_rate": 0.05, "max_p95_ms": 5000})
    before = Snapshot()
    after = Snapshot(requests=100, errors=10, buckets={0.1: 100.0, float("inf"): 100.0})
    figures = bake_figures(settings, "http://r", before, after, ready=True)
    assert figures.error_rate == pytest.approx(0.1)
    assert "error rate 0.100" in (figures.breach or "")
    calm = Snapshot(requests=100, errors=0, buckets={0.1: 100.0, float("inf"): 100.0})
    assert bake_figures(settings, "http://r", before, calm, ready=True).breach is None
    assert "/ready" in (bake_figures(settings, "http://r", before, calm, ready=False).breach or "")


def test_local_profile_makes_one_private_admin_token(tmp_path: Path) -> None:
    settings = load_settings(profile="local", home=tmp_path)
    token = settings.admin_secret()
    assert token and len(token) > 30
    assert load_settings(profile="local", home=tmp_path).admin_secret() == token
    mode = (tmp_path / "state" / "admin-token").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert load_settings(profile="production", home=tmp_path / "p").admin_secret() is None
    assert load_settings(admin_token="given").admin_secret() == "given"


def test_devices_and_strategy_settings_reach_the_trainer() -> None:
    from citeops.tasks.train.fit import build_trainer

    settings = load_settings(train={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"})
    trainer = build_trainer(settings, "32-true", [], progress=False)
    assert trainer.num_devices == 2
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    single = build_trainer(load_settings(), "32-true", [], progress=False)
    assert single.num_devices == 1
