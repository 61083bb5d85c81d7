"""Request and response bodies of the serving API, and the input checks that name fields.

Whatever the API acknowledges must be accepted downstream: every text field refuses a NUL
character and lone surrogates (which the log writer cannot encode and PostgreSQL cannot
store), and the length limits are ingestion's own (:class:`TextLimits`), so a line the API
logged is never quarantined as ``text_too_long``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, PlainValidator, StrictStr, WithJsonSchema

from citeops.tasks.classifier.preprocess import as_text
from citeops.tasks.logcontract import MAX_META_CHARS

if TYPE_CHECKING:
    from citeops.configs.settings import Settings


class BadInput(Exception):
    """A request field is unacceptable; ``field`` names it (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def storable_text_problem(value: str) -> str | None:
    """Why ``value`` cannot be logged and stored as UTF-8 text, or None if it can."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = ord(value[error.start])
        return f"contains a lone surrogate (\\u{bad:04x} at {error.start}), which is not valid text"
    return None


def _storable(value: str) -> str:
    problem = storable_text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A JSON string that can be written as UTF-8 and stored in any text column.
Text = Annotated[StrictStr, AfterValidator(_storable)]


def _evidence(value: Any) -> str | list[str]:
    """A storable text, or a list of storable texts (the sentences of the evidence)."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        for item in value:
            _storable(item)
        return value
    raise ValueError("must be a text or a list of texts (its sentences)")


# One validator, so that an error names the field itself (``evidence``), not a union member.
EvidenceField = Annotated[
    Any,
    PlainValidator(_evidence),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class PredictRequest(BaseModel):
    claim: Text = Field(description="The claim to verify.")
    evidence: EvidenceField = Field(
        description="Text of the cited paper (e.g. its abstract), as one text or as a list "
        "of its sentences (kept as given when the model selects evidence sentences)."
    )

    @property
    def evidence_text(self) -> str:
        """The evidence as one text (sentences joined by spaces): what is checked and logged."""

        return as_text(self.evidence)


class BatchRequest(BaseModel):
    pairs: list[PredictRequest] = Field(
        description="Pairs to score, at most serve.max_batch_request."
    )


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    model_version: str
    slot: str
    arm: str = Field(description="champion, or challenger for an A/B experiment's share.")
    request_id: str


class BatchResponse(BaseModel):
    predictions: list[Prediction]


class FeedbackRequest(BaseModel):
    request_id: Text | None = Field(None, description="The prediction this feedback is about.")
    claim: Text
    evidence: Text
    prediction: Text | None = Field(None, description="The label the model gave.")
    user_label: Text = Field(description="The label the user believes is right.")


class FeedbackAccepted(BaseModel):
    id: str
    request_id: str | None


class DeployRequest(BaseModel):
    model_uri: Text = Field(
        description="models:/name/version, models:/name@alias, runs:/..., or a folder."
    )


class AbStartRequest(BaseModel):
    model_uri: Text = Field(description="The challenger, as for /admin/deploy.")
    share: float = Field(
        ge=0.0, le=1.0, description="Share of clients (split) or of requests (shadow)."
    )
    mode: Literal["split", "shadow"] = Field(
        "split", description="split: the challenger answers its share; shadow: it scores a copy."
    )
    experiment_id: Text | None = Field(
        None, description="Names the experiment and seeds the sticky arms (default: new)."
    )
    seed: int = Field(0, description="Seeds the arms of requests that name no client.")


class AbStopRequest(BaseModel):
    action: Literal["promote", "abort"] = Field(
        description="promote: the challenger goes live; abort: the champion stays live."
    )


@dataclass(frozen=True)
class TextLimits:
    """Longest accepted texts, in characters.

    Ingestion's limits (``ingest.max_claim_chars``, ``ingest.max_evidence_chars`` and the
    log contract's :data:`~citeops.tasks.logcontract.MAX_META_CHARS` on request ids) are
    the definition; ``serve.max_text_chars`` can only tighten them for the API (it bounds
    tokenisation work per request).
    """

    claim: int
    evidence: int
    request_id: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TextLimits:
        serve_cap = settings.serve.max_text_chars
        return cls(
            claim=min(settings.ingest.max_claim_chars, serve_cap),
            evidence=min(settings.ingest.max_evidence_chars, serve_cap),
            request_id=MAX_META_CHARS,
        )


def check_text(field: str, value: str, max_chars: int) -> str:
    """The text unchanged, or :class:`BadInput` if empty, blank, longer than ``max_chars``
    or not storable (NUL, lone surrogate)."""
    if not value.strip():
        raise BadInput(field, "must not be empty or whitespace only")
    if len(value) > max_chars:
        raise BadInput(field, f"is {len(value)} characters; at most {max_chars} are accepted")
    problem = storable_text_problem(value)
    if problem:
        raise BadInput(field, problem)
    return value


def check_pair(prefix: str, claim: str, evidence: str, limits: TextLimits) -> None:
    """Check one (claim, evidence) pair; field names get ``prefix`` (e.g. ``pairs[2].``)."""
    check_text(prefix + "claim", claim, limits.claim)
    check_text(prefix + "evidence", evidence, limits.evidence)


def check_request_id(field: str, value: str | None, limits: TextLimits) -> str | None:
    """A request id within ``limits.request_id`` characters (None passes)."""
    if value is not None and len(value) > limits.request_id:
        raise BadInput(
            field, f"is {len(value)} characters; at most {limits.request_id} are accepted"
        )
    return value


def check_client_id(field: str, value: str | None) -> str | None:
    """A client id as logged (surrounding blanks removed; None or blank: no client), or
    :class:`BadInput` when longer than the log contract's identifiers or not storable."""
    client = (value or "").strip()
    return check_text(field, client, MAX_META_CHARS) if client else None


def check_label(field: str, value: str, labels: tuple[str, ...]) -> str:
    """The label in canonical case, or :class:`BadInput` if it is not one of ``labels``."""
    canonical = value.strip().upper()
    if canonical not in labels:
        raise BadInput(field, f"unknown label {value!r}; expected one of {', '.join(labels)}")
    return canonical
