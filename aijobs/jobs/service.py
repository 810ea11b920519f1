"""The job service on the client's side: read, list, cancel.

Services flush; the edge commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from aijobs import cursor as cursor_of
from aijobs.errors import Conflict, InvalidRequest, NotFound
from aijobs.jobs import transitions
from aijobs.jobs.transitions import STATUSES
from aijobs.jobs.view import row_of
from aijobs.models import Job


def _parse_id(job_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        return None


def get(session: Session, tenant_id: uuid.UUID, job_id: str) -> Job:
    """A tenant's job; another tenant's id answers exactly like a missing one."""
    parsed = _parse_id(job_id)
    job = session.get(Job, parsed) if parsed is not None else None
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"no job {job_id}")
    return job


def get_row(session: Session, tenant_id: uuid.UUID, job_id: str) -> dict[str, Any]:
    return row_of(get(session, tenant_id, job_id))


def list_jobs(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, paged on the unique key (created_at, id)."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
        query = query.where(Job.status == status)
    if cursor:
        created, last_id = cursor_of.read_keyset(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
        )
    rows = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    next_cursor = (
        cursor_of.keyset(rows[limit - 1].created_at, rows[limit - 1].id)
        if len(rows) > limit
        else None
    )
    return [row_of(job) for job in rows[:limit]], next_cursor


@dataclass(frozen=True)
class Cancelled:
    row: dict[str, Any]
    heir: uuid.UUID | None  # a follower that now leads, to publish


def cancel(session: Session, tenant_id: uuid.UUID, job_id: str) -> Cancelled:
    """queued or running -> cancelled (transitions.cancel); 409 when it already ended."""
    job = get(session, tenant_id, job_id)
    cancelled = transitions.cancel(session.connection(), job.id)
    session.refresh(job)
    if not cancelled.changed and job.status != "cancelled":
        raise Conflict(f"job {job_id} already ended as {job.status}; it cannot be cancelled")
    return Cancelled(row_of(job), cancelled.heir)
