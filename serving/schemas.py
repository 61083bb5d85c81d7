"""Request and response bodies of the serving API, and the input checks that name fields."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictStr


class BadInput(Exception):
    """A request field is unacceptable; ``field`` names it (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PredictRequest(BaseModel):
    claim: StrictStr = Field(description="The claim to verify.")
    evidence: StrictStr = Field(description="Text of the cited paper (e.g. its abstract).")


class BatchRequest(BaseModel):
    pairs: list[PredictRequest] = Field(
        description="Pairs to score, at most serve.max_batch_request."
    )


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    model_version: str
    slot: str
    request_id: str


class BatchResponse(BaseModel):
    predictions: list[Prediction]


class FeedbackRequest(BaseModel):
    request_id: StrictStr | None = Field(None, description="The prediction this feedback is about.")
    claim: StrictStr
    evidence: StrictStr
    prediction: StrictStr | None = Field(None, description="The label the model gave.")
    user_label: StrictStr = Field(description="The label the user believes is right.")


class FeedbackAccepted(BaseModel):
    id: str
    request_id: str | None


class DeployRequest(BaseModel):
    model_uri: StrictStr = Field(
        description="models:/name/version, models:/name@alias, runs:/..., or a folder."
    )


def check_text(field: str, value: str, max_chars: int) -> str:
    """The text unchanged, or :class:`BadInput` if empty, blank or longer than ``max_chars``."""
    if not value.strip():
        raise BadInput(field, "must not be empty or whitespace only")
    if len(value) > max_chars:
        raise BadInput(field, f"is {len(value)} characters; at most {max_chars} are accepted")
    return value


def check_label(field: str, value: str, labels: tuple[str, ...]) -> str:
    """The label in canonical case, or :class:`BadInput` if it is not one of ``labels``."""
    canonical = value.strip().upper()
    if canonical not in labels:
        raise BadInput(field, f"unknown label {value!r}; expected one of {', '.join(labels)}")
    return canonical
