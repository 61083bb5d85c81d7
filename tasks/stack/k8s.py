"""Kubernetes manifests rendered from the settings (`citeops k8s render`).

The objects citeops needs in a cluster, on existing engines only: the serving Deployment
(readiness ``/ready``, liveness ``/health``, a rolling update that never takes a ready
replica away before its successor is ready, a PodDisruptionBudget), a Service for clients
and a headless Service whose DNS records list the replicas for promotion
(``promote.endpoints = ["dns://<headless service>:<port>"]``), the Prefect worker of the
Kubernetes work pool with the RBAC it needs to start flow-run Jobs, the GPU work pool's
base job template, and the MLflow tracking server. Credentials are Secret references by
name and key, never values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from citeops.tasks.errors import CiteopsError

if TYPE_CHECKING:
    from citeops.configs.k8s import K8sSettings
    from citeops.configs.settings import Settings

APP = "citeops"
SERVING = "citeops-serving"
HEADLESS = "citeops-serving-replicas"
WORKER = "citeops-prefect-worker"
MLFLOW = "citeops-mlflow"
MLFLOW_PORT = 5000
RBAC = "rbac.authorization.k8s.io/v1"
# environment variable -> key of the operator's Secret
SECRET_ENV = {
    "CITEOPS_STORE_URL": "store-url",
    "CITEOPS_MLFLOW__TRACKING_URI": "mlflow-tracking-uri",
    "CITEOPS_ADMIN_TOKEN": "admin-token",
    "AWS_ACCESS_KEY_ID": "aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key",
}
MLFLOW_SECRET_ENV = {
    "MLFLOW_BACKEND_STORE_URI": "mlflow-backend-store-uri",
    "MLFLOW_ARTIFACTS_DESTINATION": "mlflow-artifacts-destination",
    "AWS_ACCESS_KEY_ID": "aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key",
}


class ManifestError(CiteopsError):
    """The manifests cannot be written where they were asked for."""


def _meta(name: str, k8s: K8sSettings, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": k8s.namespace,
        "labels": {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component},
    }


def _selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}


def _deployment(
    meta: dict[str, Any], component: str, pod: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    """A Deployment of ``component``'s pods (``pod``: the pod spec); one replica unless
    ``spec`` says otherwise."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            **spec,
            "selector": {"matchLabels": _selector(component)},
            "template": {"metadata": {"labels": _selector(component)}, "spec": pod},
        },
    }


def secret_env(k8s: K8sSettings, keys: dict[str, str]) -> list[dict[str, Any]]:
    """Environment variables read from the operator's Secret (``optional``: a key the
    deployment does not use, say AWS keys with IRSA, may be absent)."""
    return [
        {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": k8s.secret_name, "key": key, "optional": True}},
        }
        for name, key in keys.items()
    ]


def _probe(path: str, port: int, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def serving_deployment(settings: Settings) -> dict[str, Any]:
    """The endpoint replicas: each holds its own blue and green slot, so a rolling update
    (a new image) is separate from a model promotion (the admin API on every replica)."""
    k8s = settings.k8s
    resources = {"cpu": k8s.serving_cpu, "memory": k8s.serving_memory}
    container = {
        "name": "serving",
        "image": k8s.image,
        "command": ["citeops", "serve", "--host", "0.0.0.0", "--port", str(k8s.serving_port)],
        "ports": [{"name": "http", "containerPort": k8s.serving_port}],
        "env": [{"name": "CITEOPS_PROFILE", "value": "production"}, *secret_env(k8s, SECRET_ENV)],
        "readinessProbe": _probe("/ready", k8s.serving_port, period=5, failures=2),
        "livenessProbe": _probe("/health", k8s.serving_port, period=15, failures=4),
        "startupProbe": _probe("/health", k8s.serving_port, period=5, failures=60),
        "resources": {"requests": resources, "limits": resources},
    }
    pod = {"terminationGracePeriodSeconds": 60, "containers": [container]}
    # a replica leaves only once its successor is ready: capacity never drops
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return _deployment(
        _meta(SERVING, k8s, "serving"),
        "serving",
        pod,
        replicas=k8s.serving_replicas,
        strategy=rolling,
    )


def serving_disruption_budget(settings: Settings) -> dict[str, Any]:
    k8s = settings.k8s
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(SERVING, k8s, "serving"),
        "spec": {
            "minAvailable": max(1, k8s.serving_replicas - 1),
            "selector": {"matchLabels": _selector("serving")},
        },
    }


def serving_services(settings: Settings) -> list[dict[str, Any]]:
    """The clients' Service, and a headless one whose DNS A records are the ready
    replicas (what promotion resolves ``dns://`` endpoints with)."""
    k8s = settings.k8s
    port = {"name": "http", "port": k8s.serving_port, "targetPort": "http"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(SERVING, k8s, "serving"),
            "spec": {"selector": _selector("serving"), "ports": [port]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(HEADLESS, k8s, "serving"),
            "spec": {"clusterIP": "None", "selector": _selector("serving"), "ports": [port]},
        },
    ]


def worker_objects(settings: Settings) -> list[dict[str, Any]]:
    """The Prefect worker of the Kubernetes work pool and the RBAC to run flow-run Jobs."""
    k8s = settings.k8s
    meta = _meta(WORKER, k8s, "prefect-worker")
    read = ["get", "list", "watch"]
    rules = [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": [*read, "create", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": read},
    ]
    container = {
        "name": "worker",
        "image": k8s.image,
        "command": [
            "prefect",
            "worker",
            "start",
            "--pool",
            k8s.work_pool,
            "--type",
            "kubernetes",
        ],  # fmt: skip
        "env": [{"name": "PREFECT_API_URL", "value": k8s.prefect_api_url}],
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
    }
    pod = {"serviceAccountName": WORKER, "containers": [container]}
    deployment = _deployment(meta, "prefect-worker", pod)
    binding = {"kind": "ServiceAccount", "name": WORKER, "namespace": k8s.namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": RBAC, "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": WORKER},
            "subjects": [binding],
        },
        deployment,
    ]  # fmt: skip


def training_job(settings: Settings) -> dict[str, Any]:
    """The Job a GPU flow run becomes: the worker fills in the command (Prefect's
    ``{{ command }}``) and the environment; GPUs, node selector and tolerations are ours."""
    k8s = settings.k8s
    gpus = {"nvidia.com/gpu": str(k8s.gpus_per_job)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": "citeops-train-", "namespace": k8s.namespace},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": dict(k8s.gpu_node_selector),
                    "tolerations": [dict(t) for t in k8s.gpu_tolerations],
                    "containers": [
                        {
                            "name": "prefect-job",
                            "image": k8s.image,
                            "args": ["{{ command }}"],
                            "env": [
                                {"name": "CITEOPS_PROFILE", "value": "production"},
                                {"name": "CITEOPS_TRAIN__ACCELERATOR", "value": "gpu"},
                                *secret_env(k8s, SECRET_ENV),
                            ],
                            "resources": {"requests": gpus, "limits": gpus},
                        }
                    ],
                }
            },
        },
    }


def gpu_base_job_template(settings: Settings) -> dict[str, Any]:
    """The GPU work pool's base job template (``prefect work-pool create --type kubernetes
    --base-job-template gpu-work-pool.json``): the job manifest and the variables a
    deployment may set."""
    k8s = settings.k8s
    text = {"type": "string"}
    return {
        "job_configuration": {
            "command": "{{ command }}",
            "env": "{{ env }}",
            "namespace": k8s.namespace,
            "job_manifest": training_job(settings),
            "cluster_config": "{{ cluster_config }}",
            "job_watch_timeout_seconds": "{{ job_watch_timeout_seconds }}",
            "pod_watch_timeout_seconds": "{{ pod_watch_timeout_seconds }}",
            "stream_output": "{{ stream_output }}",
        },
        "variables": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "title": "Command"},
                "env": {"type": "object", "title": "Environment", "additionalProperties": text},
                "cluster_config": {"type": "object", "title": "Cluster config"},
                "job_watch_timeout_seconds": {"type": "integer", "default": None},
                "pod_watch_timeout_seconds": {"type": "integer", "default": 600},
                "stream_output": {"type": "boolean", "default": True},
            },
        },
    }  # fmt: skip


def mlflow_objects(settings: Settings) -> list[dict[str, Any]]:
    """The MLflow tracking server (backend store and artifact destination from the
    Secret) and its Service."""
    k8s = settings.k8s
    meta = _meta(MLFLOW, k8s, "mlflow")
    command = [
        "sh", "-c",
        "mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri "
        '"$MLFLOW_BACKEND_STORE_URI" --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"',
    ]  # fmt: skip
    container = {
        "name": "mlflow",
        "image": k8s.mlflow_image,
        "command": command,
        "ports": [{"name": "http", "containerPort": MLFLOW_PORT}],
        "env": secret_env(k8s, MLFLOW_SECRET_ENV),
        "readinessProbe": _probe("/health", MLFLOW_PORT, 10, 3),
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
    }
    deployment = _deployment(meta, "mlflow", {"containers": [container]})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": _selector("mlflow"),
            "ports": [{"name": "http", "port": MLFLOW_PORT, "targetPort": "http"}],
        },
    }
    return [deployment, service]


def render_manifests(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """File name -> the Kubernetes objects it holds."""
    return {
        "serving.yaml": [
            serving_deployment(settings),
            serving_disruption_budget(settings),
            *serving_services(settings),
        ],
        "prefect-worker.yaml": worker_objects(settings),
        "mlflow.yaml": mlflow_objects(settings),
    }


def write_manifests(settings: Settings, out: Path) -> list[Path]:
    """Write the manifests (YAML, one file per part) and the GPU work pool's base job
    template (JSON) into ``out``; the paths written.

    Raises:
        ManifestError: ``out`` is not a folder that can be written.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ManifestError(f"{out}: cannot write the manifests there ({error.strerror})") from None
    written = []
    for name, objects in render_manifests(settings).items():
        path = out / name
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        written.append(path)
    template = out / "gpu-work-pool.json"
    template.write_text(json.dumps(gpu_base_job_template(settings), indent=2) + "\n")
    return [*written, template]
