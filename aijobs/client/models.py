"""Typed answers of the API: the job and batch objects of docs/api.md, their pages, a
line of a batch's results, a job's events and its feedback. `extra="allow"` everywhere:
a field the API adds later is kept (as an attribute) and never breaks an older client."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TERMINAL_JOB = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_BATCH = frozenset({"completed", "cancelled"})


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Open):
    input_tokens: int = 0
    output_tokens: int = 0


class JobResult(_Open):
    content: str | None = None
    parsed: Any = None
    embeddings: list[list[float]] | None = None
    finish_reason: str | None = None


class JobError(_Open):
    code: str
    message: str = ""
    retryable: bool = False


class WebhookState(_Open):
    url: str
    status: str  # pending | delivered | failed
    attempts: int = 0


class PromptUsed(_Open):
    name: str
    version: int


class CheckOutcome(_Open):
    type: str
    passed: bool
    detail: str | None = None


class Job(_Open):
    id: str
    status: str  # queued | running | succeeded | failed | cancelled
    model: str
    task: str = "chat"
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    result: JobResult | None = None
    error: JobError | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    cache_hit: bool = False
    metadata: dict[str, str] = {}
    webhook: WebhookState | None = None
    answered_by: str | None = None
    purged: bool = False
    prompt: PromptUsed | None = None
    checks: list[CheckOutcome] | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    priority: str | None = None

    @property
    def done(self) -> bool:
        """Terminal: succeeded, failed or cancelled."""
        return self.status in TERMINAL_JOB


class JobPage(_Open):
    data: list[Job]
    next_cursor: str | None = None


class Feedback(_Open):
    """A job's feedback (POST/GET /v1/jobs/{id}/feedback)."""

    id: str
    job_id: str
    name: str
    value: bool | int | float | str
    comment: str | None = None
    source: str = "api"  # user | reviewer | api
    created_at: datetime


class BatchCounts(_Open):
    total: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class Batch(_Open):
    id: str
    status: str  # queued | running | completed | cancelling | cancelled
    counts: BatchCounts
    cost_usd: Decimal = Decimal(0)
    tier: str = "standard"
    metadata: dict[str, str] = {}
    created_at: datetime
    finished_at: datetime | None = None
    webhook: WebhookState | None = None

    @property
    def done(self) -> bool:
        """Every job has ended: completed or cancelled."""
        return self.status in TERMINAL_BATCH


class BatchPage(_Open):
    data: list[Batch]
    next_cursor: str | None = None


class BatchResult(_Open):
    """One line of GET /v1/batches/{id}/results, in the batch's input order."""

    custom_id: str
    job_id: str
    status: str
    result: JobResult | None = None
    error: JobError | None = None
    usage: Usage | None = None
    cost_usd: Decimal | None = None


# A job's events (GET /v1/jobs/{id}/events): one model per kind, so a `match` or an
# isinstance check gives typed fields. `id` is the event's SSE id (0, 1, 2, ... per job).


class _Event(_Open):
    id: int


class StatusEvent(_Event):
    """The job's status changed (or, first on a stream, the status it has)."""

    type: Literal["status"] = "status"
    status: str


class AttemptEvent(_Event):
    """A provider call began: its number (1, 2, ...) and the model called."""

    type: Literal["attempt"] = "attempt"
    number: int
    model: str


class DeltaEvent(_Event):
    """A piece of the output of the attempt being streamed (jobs with "stream": true)."""

    type: Literal["delta"] = "delta"
    text: str


class ResetEvent(_Event):
    """The attempt being streamed failed: drop its deltas; the next attempt streams anew.
    `attempt` is its number (None when the worker running it was lost)."""

    type: Literal["reset"] = "reset"
    attempt: int | None = None
    code: str


class DoneEvent(_Event):
    """The job ended; `job` is the final job object. The stream closes after it."""

    type: Literal["done"] = "done"
    job: Job


JobEvent = StatusEvent | AttemptEvent | DeltaEvent | ResetEvent | DoneEvent
