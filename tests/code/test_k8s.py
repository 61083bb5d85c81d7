"""`citeops k8s render`: manifests from the settings, valid against the Kubernetes
schemas (offline), Secrets referenced by name only."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from citeops.configs.settings import load_settings
from citeops.flows.cli import app
from citeops.flows.cli.common import run_cli


def rendered(tmp_path: Path) -> tuple[Path, list[dict]]:
    out = tmp_path / "manifests"
    assert run_cli(app, ["k8s", "render", "--out", str(out), "--profile", "test"]) == 0
    objects = [
        doc
        for path in sorted(out.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    return out, objects


def test_every_manifest_is_valid_against_the_kubernetes_schemas(tmp_path: Path) -> None:
    out, objects = rendered(tmp_path)
    version = load_settings().k8s.kubernetes_version
    kinds = sorted(doc["kind"] for doc in objects)
    assert kinds == sorted(
        ["Deployment"] * 3 + ["PodDisruptionBudget", "Service", "Service", "Service"]
        + ["ServiceAccount", "Role", "RoleBinding"]
    )  # fmt: skip
    for doc in objects:
        kubernetes_validate.validate(doc, version, strict=True)
    template = json.loads((out / "gpu-work-pool.json").read_text())
    job = template["job_configuration"]["job_manifest"]
    kubernetes_validate.validate(job, version, strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert job["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_an_invalid_manifest_is_caught_by_the_validation() -> None:
    """The check itself: a probe with a misspelt field fails strict validation."""
    from citeops.tasks.stack.k8s import serving_deployment

    bad = serving_deployment(load_settings())
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, load_settings().k8s.kubernetes_version, strict=True)


def test_serving_probes_rollout_and_replica_discovery(tmp_path: Path) -> None:
    _, objects = rendered(tmp_path)
    serving = next(d for d in objects if d["metadata"]["name"] == "citeops-serving"
                   and d["kind"] == "Deployment")  # fmt: skip
    container = serving["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert serving["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert serving["spec"]["replicas"] == load_settings().k8s.serving_replicas
    headless = [d for d in objects if d["kind"] == "Service" and d["spec"].get("clusterIP")]
    assert [d["spec"]["clusterIP"] for d in headless] == ["None"]
    budget = next(d for d in objects if d["kind"] == "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] >= 1


def test_secrets_are_referenced_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITEOPS_ADMIN_TOKEN", "s3cr3t-admin-token")
    monkeypatch.setenv("CITEOPS_STORE_URL", "postgresql+psycopg://u:hunter2@db/citeops")
    out, objects = rendered(tmp_path)
    text = "".join(path.read_text() for path in out.iterdir())
    assert "s3cr3t-admin-token" not in text and "hunter2" not in text
    assert all(doc["kind"] != "Secret" for doc in objects)
    assert "secretKeyRef" in text


def test_render_into_a_file_path_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    assert run_cli(app, ["k8s", "render", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_dns_endpoints_expand_to_every_replica_address() -> None:
    """Promotion's replica discovery, with a stub only at the DNS boundary."""
    import socket

    from citeops.tasks.release.endpoints import EndpointDiscoveryFailed, serving_endpoints

    answers = {
        "citeops-serving-replicas": [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 8000)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 8000)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 8000)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::9", 8000, 0, 0)),
        ]
    }

    def resolver(name: str, port: int, **_: object) -> list[tuple]:
        if name not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[name]

    settings = load_settings(
        promote={"endpoints": ["dns://citeops-serving-replicas:8000", "http://10.0.0.5:8000"]}
    )
    assert serving_endpoints(settings, resolver) == [
        "http://10.0.0.5:8000",
        "http://10.0.0.7:8000",
        "http://[fd00::9]:8000",
    ]
    plain = load_settings(promote={"endpoints": ["http://a:1", "http://b:1"]})
    assert serving_endpoints(plain, resolver) == ["http://a:1", "http://b:1"]
    for bad in ("dns://missing:8000", "dns://no-port"):
        with pytest.raises(EndpointDiscoveryFailed, match=bad.split("//")[1].split(":")[0]):
            serving_endpoints(load_settings(promote={"endpoints": [bad]}), resolver)
