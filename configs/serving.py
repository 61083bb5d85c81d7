"""Settings of the inference endpoint: serving, micro-batching per runtime, and who may
send feedback."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from citeops.configs.base import Section

SERVING_RUNTIMES = ("torch", "onnxruntime", "openvino")
# Measured per-runtime micro-batching defaults, where a runtime's best budget differs from
# the serve.max_* defaults (BENCHMARKS.md, serve: token sweep of 2026-12-02; PyTorch bf16
# served 31 % more pairs/s at 2048 padded tokens than at 512, OpenVINO and ONNX Runtime
# were within 4 % of their 512 figure). They apply where neither serve.batching.<runtime>
# nor serve.<name> itself is set.
RUNTIME_BATCHING_DEFAULTS: dict[str, dict[str, int | float]] = {
    "torch": {"max_batch_tokens": 2048},
}


class BatchingSettings(Section):
    """One runtime's micro-batching budget (``serve.batching.<runtime>``); a field left
    unset takes the ``serve.max_*`` default of the same name."""

    max_batch_size: int | None = Field(None, ge=1)
    """Pairs per forward pass on this runtime (None: `serve.max_batch_size`)."""
    max_batch_tokens: int | None = Field(None, ge=1)
    """Padded tokens per forward pass on this runtime (None: `serve.max_batch_tokens`)."""
    max_wait_ms: float | None = Field(None, ge=0)
    """Wait for more requests on this runtime (None: `serve.max_wait_ms`)."""


class ServeSettings(Section):
    """The inference endpoint."""

    host: str = "127.0.0.1"
    """Address the endpoint listens on."""
    port: int = Field(8000, ge=1, le=65535)
    """Port the endpoint listens on."""
    max_batch_size: int = Field(16, ge=1)
    """Micro-batching default: pairs per forward pass (`batching` overrides it per
    runtime; a slot uses the budget of the runtime it serves on)."""
    max_batch_tokens: int = Field(512, ge=1)
    """Micro-batching default: padded tokens per forward pass (CPU caches)."""
    max_wait_ms: float = Field(5.0, ge=0)
    """Micro-batching default: how long a batch waits for more requests."""
    batching: dict[Literal["torch", "onnxruntime", "openvino"], BatchingSettings] = {}
    """Per-runtime micro-batching overrides (keys torch, onnxruntime, openvino), e.g.
    CITEOPS_SERVE__BATCHING__OPENVINO__MAX_BATCH_TOKENS=1024."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where PyTorch runs: auto is cuda when torch sees a CUDA GPU (and precision is not
    int8, which runs on the CPU only), else cpu; ONNX Runtime and OpenVINO run on the CPU."""
    queue_size: int = Field(256, ge=1)
    """Requests waiting for the micro-batcher before the endpoint answers 503."""
    max_batch_request: int = Field(64, ge=1)
    """Pairs in one POST /predict/batch."""
    max_text_chars: int = Field(20000, ge=1)
    """Characters of a claim or evidence; the API also enforces `ingest.max_claim_chars`
    and `ingest.max_evidence_chars`, and this can only tighten them."""
    max_body_bytes: int = Field(1_000_000, ge=1)
    """Largest request body."""
    metrics_top_clients: int = Field(20, ge=1, le=1000)
    """Clients with their own `client` label on /metrics (the busiest; the rest count as
    `other`): bounds the series a client id can create."""
    precision: Literal["fp32", "bf16", "int8"] = "bf16"
    """PyTorch's precision (bf16 autocast: 99.89 % label agreement with fp32 on the 906
    test pairs, BENCHMARKS.md); ONNX Runtime and OpenVINO have their own."""
    threads: int | None = Field(None, ge=1)
    """Inference CPU threads (None: the runtime's default)."""
    log_part_max_lines: int = Field(1000, ge=1)
    """Lines of a query or feedback log part before a new part starts."""
    log_part_max_seconds: float = Field(60.0, gt=0)
    """Age of a log part before a new part starts."""
    feedback_write_timeout_seconds: float = Field(10.0, gt=0)
    """/feedback answers 202 only once its line is in the part file; 503 after this long."""
    shutdown_timeout_seconds: int = Field(10, ge=1)
    """On SIGTERM / SIGINT: how long in-flight requests (a slow client's body included) may
    take to finish before they are cancelled; the open log parts are published after."""
    smoke_agreement_threshold: float = Field(0.0, ge=0, le=1)
    """Least label agreement of a newly deployed model with the live one on recent
    requests (0: not checked)."""
    omp_wait_policy: Literal["passive", "active", "inherit"] = "passive"
    """OpenMP threads sleep instead of spinning at barriers: on a CPU shared with other
    work, spinning made inference several times slower (BENCHMARKS.md, serve)."""
    runtime: Literal["auto", "torch", "onnxruntime", "openvino"] = "auto"
    """Which inference runtime serves, validates and evaluates (tasks/inference/runtimes.py).
    auto: the fastest runtime whose label agreement with PyTorch fp32 on the model's parity
    sample is at least `auto_min_agreement`, from a short calibration at load time, cached
    per model version and CPU; a version without a parity-checked ONNX export is always
    served by PyTorch."""
    onnxruntime_precision: Literal["fp32", "int8"] = "fp32"
    """ONNX Runtime's precision."""
    openvino_precision: Literal["fp32", "bf16"] = "bf16"
    """OpenVINO's precision."""
    auto_min_agreement: float = Field(0.99, ge=0, le=1)
    """Least label agreement with PyTorch fp32 for auto to choose a runtime."""
    calibration_pairs: int = Field(32, ge=1)
    """auto times each runtime on the first this many pairs of the parity sample."""
    evidence_cache_mb: float = Field(0.0, ge=0)
    """Siamese head: megabytes of evidence embeddings kept per loaded model, so that a
    claim checked against an evidence seen before costs a claim pass only (0: none kept);
    counted in /metrics (citeops_evidence_cache). Off by default: a served model whose
    cache hits ran at 0.63x the pairs/s of one without on the same workload, for a reason
    not yet found (BENCHMARKS.md ## serve, 2026-12-04), though the same predictor in one
    process is not slower; set it (e.g. 64) where evidences repeat once that is
    understood."""
    shadow_batch_size: int = Field(4, ge=1)
    """Shadow scoring: copies per challenger pass (smaller passes delay a live batch
    less)."""
    shadow_nice: int = Field(10, ge=0, le=19)
    """Shadow scoring: niceness added to the thread that scores the shadow copies (0: the
    same priority as live inference)."""

    @field_validator("batching", mode="before")
    @classmethod
    def _known_runtimes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(str(key) for key in value if key not in SERVING_RUNTIMES)
            if unknown:
                raise ValueError(
                    f"unknown runtime {', '.join(unknown)}; the keys are "
                    f"{', '.join(SERVING_RUNTIMES)}"
                )
        return value

    def batching_value(self, runtime: str, name: str) -> Any:
        """``name`` (``max_batch_size``, ``max_batch_tokens`` or ``max_wait_ms``) for
        ``runtime``: ``batching.<runtime>.<name>`` where it is set, else ``<name>`` where
        it is set, else the runtime's measured default (``RUNTIME_BATCHING_DEFAULTS``),
        else ``<name>``'s default."""
        override = self.batching.get(runtime)  # type: ignore[call-overload]
        value = getattr(override, name) if override is not None else None
        if value is not None:
            return value
        measured = RUNTIME_BATCHING_DEFAULTS.get(runtime, {}).get(name)
        if measured is not None and name not in self.model_fields_set:
            return measured
        return getattr(self, name)


CLIENT_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"


class FeedbackSettings(Section):
    """Who may send ``/feedback`` and how often (see docs/security.md).

    With ``require_credentials`` every ``/feedback`` request must carry an API key or a
    token signed by the app (``Authorization: Bearer ...``), its client id is written with
    the feedback line, and only such authenticated feedback counts toward the retraining
    trigger. It is required in the ``production`` profile; the ``local`` and ``test``
    profiles turn it off (a valid credential is still checked and recorded when sent).

    Secrets come only from the environment, never from a profile file.
    """

    require_credentials: bool = True
    """/feedback needs an API key or an app token (required in production)."""
    api_keys: SecretStr | None = None
    """Secret, environment only: client-id:key,client-id:key (keys of at least 16
    characters)."""
    token_secret: SecretStr | None = None
    """Secret, environment only: the HMAC-SHA256 key the app signs tokens with (at least
    32 characters)."""
    token_max_ttl_seconds: float = Field(30 * 24 * 3600, gt=0)
    """Tokens that live longer than this are refused."""
    rate_per_minute: float = Field(60.0, gt=0)
    """Feedback requests per minute per client (or per address without one)."""
    rate_burst: int = Field(20, ge=1)
    """Requests a client may send at once above the rate."""
    rate_max_clients: int = Field(100_000, ge=1)
    """Clients whose rate is tracked at once (bounds memory)."""
    use_flagged: bool = False
    """Train on (and count toward the trigger) feedback the quality stage flagged as
    likely wrong (see docs/feedback-quality.md)."""
    max_flagged_share: float = Field(0.5, ge=0, le=1)
    """A client whose share of flagged feedback lines is above this is reported (and
    excluded with `auto_exclude`)."""
    min_client_items: int = Field(50, ge=1)
    """Feedback lines a client must have sent before its flagged share is judged."""
    auto_exclude: bool = True
    """Exclude a client above `max_flagged_share` automatically (reversible: `citeops
    feedback include`; a client let back in is never excluded automatically again)."""
    flag_rule: Literal["posterior", "off_diagonal", "prune_by_noise_rate", "both"] = "posterior"
    """Confident-learning rule that flags label issues (docs/feedback-quality.md):
    posterior flags a label more likely wrong than `flag_min_wrong` by Bayes' rule on the
    champion's probabilities and the estimated noise matrix; off_diagonal (the rule before
    2026-12-04) every label the model confidently disagrees with."""
    flag_min_wrong: float = Field(0.5, gt=0, lt=1)
    """The posterior rule flags a label whose probability of being wrong reaches this."""
    score_batch_size: int = Field(32, ge=1)
    """Pairs per batch when the champion scores feedback."""
    score_max_rows: int = Field(5000, ge=1)
    """Feedback rows the champion scores per run, newest first (the rest wait for the next
    run)."""

    @field_validator("api_keys")
    @classmethod
    def _key_list(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())
        return value

    @field_validator("token_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    def client_keys(self) -> dict[str, str]:
        """``{key: client id}`` from ``api_keys`` (empty when none are set)."""
        return parse_api_keys(self.api_keys.get_secret_value()) if self.api_keys else {}


def parse_api_keys(text: str) -> dict[str, str]:
    """``"alice:key1,app:key2"`` -> ``{"key1": "alice", "key2": "app"}``.

    Raises:
        ValueError: an entry is not ``client-id:key``, a client id is not 1-64 of
            ``A-Z a-z 0-9 _ -``, a key is shorter than 16 characters or used twice. The
            message never quotes a key.
    """
    keys: dict[str, str] = {}
    for number, entry in enumerate((e.strip() for e in text.split(",") if e.strip()), 1):
        client, sep, key = entry.partition(":")
        if not sep or not re.match(CLIENT_ID_PATTERN, client.strip()):
            raise ValueError(
                f"entry {number} must be client-id:key with a client id of 1-64 letters, "
                "digits, _ or -"
            )
        key = key.strip()
        if len(key) < 16:
            raise ValueError(f"entry {number} ({client.strip()}): key shorter than 16 characters")
        if key in keys:
            raise ValueError(f"entry {number} ({client.strip()}): key used twice")
        keys[key] = client.strip()
    return keys
