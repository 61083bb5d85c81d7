"""A real Prometheus server for tests (Debian's ``prometheus``), the dashboard's queries,
and a PNG of the dashboard's panels drawn from Prometheus' range API with matplotlib."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import free_port

MONITORING = Path(__file__).resolve().parents[2] / "serving" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
SCRAPE_CONFIG = MONITORING / "prometheus.yml"
RATE_WINDOW = "1m"  # what Grafana's $__rate_interval becomes here


def prometheus_missing() -> str | None:
    """Why a real Prometheus cannot run here, or None."""
    if shutil.which("prometheus") is None:
        return (
            "Prometheus is not installed (no `prometheus` on PATH): "
            "apt-get install -y prometheus (.ci/run does)"
        )
    return None


def scrape_config(target: str, interval_s: float = 1.0) -> dict[str, Any]:
    """The repository's scrape config, pointed at ``target`` (host:port) every
    ``interval_s`` seconds."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    interval = f"{int(interval_s * 1000)}ms"
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    return config


@contextmanager
def running_prometheus(
    config: dict[str, Any], folder: Path, timeout: float = 60.0
) -> Iterator[str]:
    """Run ``prometheus`` with ``config`` on a free 127.0.0.1 port, its storage in
    ``folder``; yield its base URL once it is ready; stop it on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(base + "/-/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "prometheus.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Prometheus did not start at {base}:\n{tail}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def dashboard_targets(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """``(panel title, legend, PromQL)`` of every query in the dashboard, with Grafana's
    ``$__rate_interval`` replaced by :data:`RATE_WINDOW` (as Grafana would)."""
    dashboard = dashboard or json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target.get("legendFormat", ""), as_promql(target["expr"]))
        for panel in dashboard["panels"]
        for target in panel.get("targets", ())
    ]


def as_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", RATE_WINDOW)


def query(base: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    """The instant vector of ``promql`` (each item: ``metric`` labels and ``value``)."""
    params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
    answer = httpx.get(base + "/api/v1/query", params=params, timeout=10).json()
    if answer.get("status") != "success":
        raise AssertionError(f"{promql}: {answer.get('error', answer)}")
    return answer["data"]["result"]


def values(result: list[dict[str, Any]], label: str | None = None) -> dict[str, float]:
    """``{label value: sample value}`` of an instant vector (key ``""`` without a label)."""
    return {
        (item["metric"].get(label, "") if label else ""): float(item["value"][1]) for item in result
    }


def finite(result: list[dict[str, Any]]) -> bool:
    """At least one sample is a number (not NaN or infinite)."""
    return any(math.isfinite(float(item["value"][1])) for item in result)


def wait_for(base: str, promql: str, expected: float, timeout: float = 30.0) -> None:
    """Until ``promql`` (one number) equals ``expected``: Prometheus has scraped it."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = values(query(base, promql))
        if seen.get("") == expected:
            return
        time.sleep(0.25)
    raise TimeoutError(f"{promql} is {seen}, not {expected}, after {timeout:.0f} s")


def render_dashboard(
    base: str, start: float, end: float, out: Path, note: str = "", step_s: float = 1.0
) -> Path:
    """Draw every panel of the dashboard (its queries over ``[start, end]`` from the range
    API) in one PNG at ``out``, laid out two panels a row, ``note`` under the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = json.loads(DASHBOARD.read_text())["panels"]
    rows = math.ceil(len(panels) / 2)
    figure, axes = plt.subplots(rows, 2, figsize=(14, 2.6 * rows), squeeze=False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        _draw_panel(axis, panel, base, start, end, step_s)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    title = json.loads(DASHBOARD.read_text())["title"]
    figure.suptitle(f"{title}\n{note}" if note else title, fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.975))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return out


def _draw_panel(
    axis: Any, panel: dict[str, Any], base: str, start: float, end: float, step_s: float
) -> None:
    axis.set_title(panel["title"], fontsize=9)
    axis.tick_params(labelsize=7)
    drawn = 0
    for target in panel["targets"]:
        params = {"query": as_promql(target["expr"]), "start": start, "end": end, "step": step_s}
        answer = httpx.get(base + "/api/v1/query_range", params=params, timeout=20).json()
        for series in answer.get("data", {}).get("result", []):
            legend = _legend(target.get("legendFormat", ""), series["metric"])
            times = [float(t) - start for t, _ in series["values"]]
            points = [float(v) for _, v in series["values"]]
            axis.plot(times, points, label=legend, linewidth=1.2)
            drawn += 1
    axis.set_xlabel("seconds", fontsize=7)
    if drawn:
        axis.legend(fontsize=6, loc="upper left")
    else:
        axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)


def _legend(template: str, labels: dict[str, str]) -> str:
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value)
    return template or ",".join(f"{k}={v}" for k, v in labels.items())
