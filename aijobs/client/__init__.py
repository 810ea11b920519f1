"""A Python client for aijobs' HTTP API: `Client` (sync) and `AsyncClient`, typed job,
batch, job-event and feedback objects, errors carrying the API's code, and webhook
verification. It imports nothing from the API or the worker: it runs in the users'
processes."""

from aijobs.client.async_ import AsyncClient
from aijobs.client.errors import (
    AijobsError,
    BudgetExceeded,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Unauthorized,
    WebhookVerificationError,
)
from aijobs.client.models import (
    AttemptEvent,
    Batch,
    BatchCounts,
    BatchPage,
    BatchResult,
    DeltaEvent,
    DoneEvent,
    Feedback,
    Job,
    JobError,
    JobEvent,
    JobPage,
    JobResult,
    ResetEvent,
    StatusEvent,
    Usage,
)
from aijobs.client.sync import Client
from aijobs.client.webhooks import verify_webhook

__all__ = [
    "AijobsError",
    "AsyncClient",
    "AttemptEvent",
    "Batch",
    "BatchCounts",
    "BatchPage",
    "BatchResult",
    "BudgetExceeded",
    "Client",
    "DeltaEvent",
    "DoneEvent",
    "Feedback",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobEvent",
    "JobPage",
    "JobResult",
    "NotFound",
    "RateLimited",
    "ResetEvent",
    "ServerError",
    "StatusEvent",
    "StreamInterrupted",
    "Unauthorized",
    "Usage",
    "WebhookVerificationError",
    "verify_webhook",
]
