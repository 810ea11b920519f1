"""Feedback requests and the feedback object. Input is hostile until shown otherwise:
every field is bounded, unknown fields are refused, and a string Postgres cannot store
(U+0000, a lone surrogate) is refused rather than repaired."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from aijobs.storable import unstorable

MAX_TEXT = 10_000
# Beyond this a number is more likely a bug than a score, and JSON clients lose
# integer precision past 2**53 anyway.
MAX_MAGNITUDE = 1e15
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
# Visible ASCII, no spaces: a UUID, a "user-42:job-7:thumbs" key, a hash...
ID_PATTERN = r"^[!-~]+$"

Scalar = bool | int | float | str


def _value(raw: Any) -> Scalar:
    """A number (finite, a bool is not one), a boolean or a string, as sent."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or abs(raw) > MAX_MAGNITUDE:
            raise PydanticCustomError(
                "feedback_number", "a number must be finite and at most 1e15 in magnitude"
            )
        return raw
    if isinstance(raw, str):
        if len(raw) > MAX_TEXT:
            raise PydanticCustomError(
                "feedback_string", "a string value holds at most {n} characters", {"n": MAX_TEXT}
            )
        return raw
    raise PydanticCustomError("feedback_value", "value must be a number, a boolean or a string")


FeedbackValue = Annotated[Scalar, PlainValidator(_value, json_schema_input_type=Scalar)]
Source = Literal["user", "reviewer", "api"]


class FeedbackCreate(BaseModel):
    """POST /v1/jobs/{id}/feedback. `id` makes the call idempotent: the same id again
    answers the stored feedback, unchanged."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    value: FeedbackValue
    comment: str | None = Field(default=None, max_length=MAX_TEXT)
    source: Source = "api"
    id: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        found = unstorable(data)
        if found is not None:
            raise PydanticCustomError(
                "unstorable_character", "{found}, which cannot be stored", {"found": found}
            )
        return data


class Feedback(BaseModel):
    """The feedback object (its OpenAPI shape; the service returns it as JSON-ready dicts)."""

    id: str
    job_id: str
    name: str
    value: Scalar
    comment: str | None
    source: Source
    created_at: datetime


class FeedbackList(BaseModel):
    data: list[Feedback]
