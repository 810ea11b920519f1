"""What POST /v1/batches accepts: the batch's options and, per line, a job request with
its custom_id. A line is validated exactly like a POST /v1/jobs body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aijobs.jobs.schemas import JobRequest

MAX_JOBS = 50_000
MAX_BODY_BYTES = 100 * 1024 * 1024
MAX_ERRORS = 100  # the errors a refused batch lists, first by index
CUSTOM_ID_MAX = 200


class BatchOptions(BaseModel):
    """The batch besides its jobs (JSON body fields, or NDJSON query parameters)."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = Field(default=None, max_length=2000)
    metadata: dict[str, str] = Field(default_factory=dict)
    tier: Literal["standard", "batch"] = "standard"


def parse_line(value: Any) -> tuple[str, JobRequest]:
    """(custom_id, the job request) of one line; LineError (with the custom_id when it
    could be read) when it is not one."""
    if not isinstance(value, dict):
        raise LineError(None, "each job must be a JSON object")
    fields = dict(value)
    custom_id = fields.pop("custom_id", None)
    if not isinstance(custom_id, str) or not 0 < len(custom_id) <= CUSTOM_ID_MAX:
        shown = custom_id if isinstance(custom_id, str) else None
        raise LineError(shown, f"custom_id must be a string of 1 to {CUSTOM_ID_MAX} characters")
    try:
        return custom_id, JobRequest.model_validate(fields)
    except ValidationError as exc:
        raise LineError(custom_id, describe(exc)) from exc


class LineError(ValueError):
    def __init__(self, custom_id: str | None, detail: str) -> None:
        super().__init__(detail)
        self.custom_id = custom_id
        self.detail = detail


def describe(exc: ValidationError) -> str:
    """The first problems of a line, as `field: message`."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
