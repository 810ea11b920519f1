"""The job object of SPEC.md, as clients see it, from a jobs row."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import inspect

from aijobs.models import Job
from aijobs.money import usd


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def row_of(job: Job) -> dict[str, Any]:
    """An ORM job as a row keyed by column name, like a Core RETURNING row."""
    mapper = inspect(Job)
    return {attr.columns[0].name: getattr(job, attr.key) for attr in mapper.column_attrs}


# The columns view() reads: a statement that returns a job to show selects just these
# (a job's stored request, prompts and all, never needs to travel back to the API).
VIEW_COLUMNS = (
    "id",
    "status",
    "model",
    "current_model",
    "task",
    "created_at",
    "started_at",
    "finished_at",
    "attempts",
    "result",
    "error_code",
    "error_message",
    "error_retryable",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cache_hit",
    "metadata",
    "webhook_url",
    "webhook_status",
    "webhook_attempts",
    "purged",
    "prompt",
    "checks",
    "batch_id",
    "custom_id",
    "priority",
)


def view(row: Mapping[str, Any]) -> dict[str, Any]:
    error = None
    if row["error_code"] is not None:
        error = {
            "code": row["error_code"],
            "message": row["error_message"] or "",
            "retryable": bool(row["error_retryable"]),
        }
    webhook = None
    if row["webhook_url"] is not None:
        # pending until the job ends and its delivery succeeds or gives up.
        webhook = {
            "url": row["webhook_url"],
            "status": row["webhook_status"] or "pending",
            "attempts": row["webhook_attempts"],
        }
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "model": row["model"],
        # Addition to SPEC: the model that produced the result (a fallback, perhaps).
        "answered_by": row["current_model"] if row["status"] == "succeeded" else None,
        "task": row["task"],
        "created_at": _iso(row["created_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "attempts": row["attempts"],
        "result": row["result"],
        "error": error,
        "usage": {"input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"]},
        "cost_usd": usd(row["cost_usd"]),
        "cache_hit": row["cache_hit"],
        "metadata": row["metadata"],
        "webhook": webhook,
        # SPEC's Retention: the request and result were removed (result is null).
        "purged": row["purged"],
        "prompt": row["prompt"],  # {"name", "version"} of the prompt it ran, or None
        # The output checks run on its last output: [{"type", "passed", "detail"}], or
        # None when none ran.
        "checks": row["checks"],
        # A batch's job: its batch and the custom_id its line gave (else both None).
        "batch_id": str(row["batch_id"]) if row["batch_id"] is not None else None,
        "custom_id": row["custom_id"],
        # interactive | batch (SPEC's "Priority and fair share"): recorded, not yet
        # an order of work (docs/api.md, Differences).
        "priority": row["priority"],
    }
