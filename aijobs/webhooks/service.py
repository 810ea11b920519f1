"""The webhook service on the API's side: a tenant's attempt log, an admin's redelivery.

Services flush; the edge commits, then publishes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from aijobs.errors import Conflict
from aijobs.jobs import service as job_service
from aijobs.jobs import triage
from aijobs.jobs.view import row_of
from aijobs.webhooks import deliveries


def attempts(session: Session, tenant_id: uuid.UUID, job_id: str) -> list[dict[str, Any]]:
    """Every delivery attempt of a tenant's job, oldest first (404 for another's job)."""
    job = job_service.get(session, tenant_id, job_id)
    return deliveries.attempts_of(session.connection(), job.id)


@dataclass(frozen=True)
class Redelivered:
    row: dict[str, Any]
    delivery_id: int  # to publish


def redeliver(session: Session, job_id: str) -> Redelivered:
    """Send the job's latest event again (same webhook-id and body), with a fresh
    run of the retry schedule."""
    job = triage.get(session, job_id)
    if job.webhook_url is None:
        raise Conflict(f"job {job_id} has no webhook_url")
    delivery_id = deliveries.redeliver(session.connection(), job.id)
    if delivery_id is None:
        raise Conflict(f"job {job_id} has not ended yet; its webhook is sent when it does")
    session.refresh(job)
    return Redelivered(row_of(job), delivery_id)
