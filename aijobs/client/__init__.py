"""A Python client for aijobs' HTTP API: `Client` (sync) and `AsyncClient`, typed job
and batch objects, errors carrying the API's code, and webhook verification. It imports
nothing from the API or the worker: it runs in the users' processes."""

from aijobs.client.async_ import AsyncClient
from aijobs.client.errors import (
    AijobsError,
    BudgetExceeded,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    WebhookVerificationError,
)
from aijobs.client.models import (
    Batch,
    BatchCounts,
    BatchPage,
    BatchResult,
    Job,
    JobError,
    JobPage,
    JobResult,
    Usage,
)
from aijobs.client.sync import Client
from aijobs.client.webhooks import verify_webhook

__all__ = [
    "AijobsError",
    "AsyncClient",
    "Batch",
    "BatchCounts",
    "BatchPage",
    "BatchResult",
    "BudgetExceeded",
    "Client",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobPage",
    "JobResult",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "Usage",
    "WebhookVerificationError",
    "verify_webhook",
]
