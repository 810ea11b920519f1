"""What an operator does with jobs across tenants: find them (by status, error code,
tenant, model, time), read their attempts, and re-run them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select, text
from sqlalchemy.orm import Session

from aijobs.errors import InvalidRequest, NotFound
from aijobs.job_view import row_of
from aijobs.jobs import STATUSES, TERMINAL, decode_cursor, encode_cursor
from aijobs.models import Attempt, Job, Tenant

BULK_CAP = 10_000
Query = TypeVar("Query", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    error_code: str | None = None
    tenant: str | None = None  # name or id
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Query) -> Query:
        if self.status is not None:
            if self.status not in STATUSES:
                raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
            query = query.where(Job.status == self.status)
        if self.error_code is not None:
            query = query.where(Job.error_code == self.error_code)
        if self.model is not None:
            query = query.where(or_(Job.model == self.model, Job.current_model == self.model))
        if self.since is not None:
            query = query.where(Job.created_at >= self.since)
        if self.until is not None:
            query = query.where(Job.created_at < self.until)
        if self.tenant is not None:
            try:
                query = query.where(Job.tenant_id == uuid.UUID(self.tenant))
            except ValueError:
                query = query.where(
                    Job.tenant_id.in_(select(Tenant.id).where(Tenant.name == self.tenant))
                )
        return query


def find(
    session: Session, where: JobFilter, *, limit: int, cursor: str | None
) -> tuple[list[tuple[dict[str, Any], str]], str | None, dict[str, int]]:
    """A page of (job row, tenant name), newest first; and counts by error code."""
    query = where.apply(select(Job, Tenant.name).join(Tenant, Tenant.id == Job.tenant_id))
    if cursor:
        created, last_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
        )
    rows = session.execute(
        query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    ).all()
    next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    counted = where.apply(
        select(func.coalesce(Job.error_code, "none"), func.count()).group_by(Job.error_code)
    )
    counts = {str(code): int(count) for code, count in session.execute(counted)}
    return [(row_of(job), name) for job, name in rows[:limit]], next_cursor, counts


def get(session: Session, job_id: str) -> Job:
    try:
        job = session.get(Job, uuid.UUID(job_id))
    except ValueError:
        job = None
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def attempts(session: Session, job_id: str) -> list[dict[str, Any]]:
    job = get(session, job_id)
    rows = session.scalars(
        select(Attempt).where(Attempt.job_id == job.id).order_by(Attempt.attempt_no)
    )

    def money(value: Decimal) -> str:
        return format(value.normalize(), "f") if value else "0"

    return [
        {
            "attempt": row.attempt_no,
            "model": row.model,
            "started_at": row.started_at.isoformat(),
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "latency_ms": row.latency_ms,
            "outcome": row.outcome,
            "error_code": row.error_code,
            "error_message": row.error_message,
            "http_status": row.http_status,
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "cost_usd": money(row.cost_usd),
            "cost_estimated": row.cost_estimated,
            "worker": row.worker,
        }
        for row in rows
    ]


# Back to queued, as a new run of the same job: its attempts stay (numbering goes on),
# its result and error go. A fresh cached success answers it at once; an identical job
# in flight leads it; else it leads and is published.
_RERUN_HIT = text(
    """
    UPDATE jobs j SET status = 'succeeded', finished_at = now(), result = c.result,
           current_model = c.model, cache_hit = true, saved_usd = j.saved_usd + c.cost_usd,
           error_code = NULL, error_message = NULL, error_retryable = NULL
    FROM cache_entries c
    WHERE j.id = :id AND c.tenant_id = j.tenant_id AND c.fingerprint = j.fingerprint
      AND c.expires_at > now()
    RETURNING j.id
    """
)
_LIVE_LEADER = text(
    """
    UPDATE jobs SET followers = followers + 1
    WHERE tenant_id = :tenant_id AND fingerprint = :fingerprint AND leader_id IS NULL
      AND status IN ('queued', 'running') AND id <> :id
    RETURNING id
    """
)
_REQUEUE = text(
    """
    UPDATE jobs SET status = 'queued', started_at = NULL, finished_at = NULL, result = NULL,
           error_code = NULL, error_message = NULL, error_retryable = NULL,
           current_model = model, model_attempts = 0, next_attempt_at = NULL,
           enqueued_at = now(), lease_owner = NULL, lease_expires_at = NULL,
           cache_hit = false, leader_id = :leader_id, followers = 0
    WHERE id = :id
    """
)


@dataclass
class Rerun:
    requeued: list[uuid.UUID] = field(default_factory=list)  # to publish
    answered: list[uuid.UUID] = field(default_factory=list)  # cache hits or followers
    skipped: dict[str, str] = field(default_factory=dict)  # id -> why

    @property
    def count(self) -> int:
        return len(self.requeued) + len(self.answered)


def rerun_one(session: Session, job_id: uuid.UUID, outcome: Rerun) -> None:
    """Only a terminal job re-runs; two re-runs of one job at once run it once (the row
    lock, then the status check)."""
    locked = select(Job).where(Job.id == job_id).with_for_update()
    # populate_existing: the row as it is now, not as this session may have read it before.
    job = session.execute(locked.execution_options(populate_existing=True)).scalar_one_or_none()
    if job is None:
        outcome.skipped[str(job_id)] = "no such job"
        return
    if job.status not in TERMINAL:
        outcome.skipped[str(job_id)] = f"{job.status}: not finished"
        return
    leader = None
    if job.fingerprint is not None:
        if session.execute(_RERUN_HIT, {"id": job.id}).first() is not None:
            outcome.answered.append(job.id)
            return
        params = {"id": job.id, "tenant_id": job.tenant_id, "fingerprint": job.fingerprint}
        leader = session.execute(_LIVE_LEADER, params).scalar()
    session.execute(_REQUEUE, {"id": job.id, "leader_id": leader})
    (outcome.answered if leader is not None else outcome.requeued).append(job.id)


def select_for_rerun(session: Session, where: JobFilter) -> list[uuid.UUID]:
    if where.status is None and where.error_code is None and where.tenant is None:
        raise InvalidRequest("a bulk re-run needs a filter: status, error_code or tenant")
    query = where.apply(select(Job.id)).where(Job.status.in_(TERMINAL))
    ids = list(session.scalars(query.order_by(Job.created_at).limit(BULK_CAP + 1)))
    if len(ids) > BULK_CAP:
        raise InvalidRequest(f"the filter matches more than {BULK_CAP} jobs; narrow it")
    return ids
