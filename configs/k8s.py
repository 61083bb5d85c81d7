"""Settings of the Kubernetes manifests `citeops k8s render` writes."""

from __future__ import annotations

from pydantic import Field

from citeops.configs.base import Section


class K8sSettings(Section):
    """What the rendered manifests run, where, and with which resources. Secrets are
    referenced by name only: the manifests never hold a credential."""

    namespace: str = "citeops"
    """Namespace of every object."""
    image: str = "ghcr.io/citeops/citeops:latest"
    """Container image holding citeops (serving, workers and training jobs run it)."""
    kubernetes_version: str = "1.31"
    """Kubernetes version the manifests are validated against."""
    serving_replicas: int = Field(2, ge=1)
    """Serving Deployment replicas (promotion deploys to each, all or nothing)."""
    serving_port: int = Field(8000, ge=1, le=65535)
    """Container port of the serving endpoint."""
    serving_cpu: str = "2"
    """CPU request and limit of one serving replica."""
    serving_memory: str = "4Gi"
    """Memory request and limit of one serving replica."""
    secret_name: str = "citeops-secrets"
    """Secret with the store URL, MLflow URIs, S3 and admin-token keys (made by the operator)."""
    prefect_api_url: str = "http://prefect-server.prefect:4200/api"
    """Prefect API the worker and the flow-run jobs talk to."""
    work_pool: str = "citeops-k8s"
    """Kubernetes work pool of the flows (the worker's pool)."""
    gpu_work_pool: str = "citeops-gpu"
    """Kubernetes work pool of training (its base job template asks for GPUs)."""
    gpus_per_job: int = Field(1, ge=1)
    """`nvidia.com/gpu` of one training job."""
    gpu_node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    """Node selector of training jobs."""
    gpu_tolerations: tuple[dict[str, str], ...] = (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    )
    """Tolerations of training jobs (GPU nodes are usually tainted)."""
    mlflow_image: str = "ghcr.io/mlflow/mlflow:v3.17.2"
    """Image of the MLflow tracking server."""
