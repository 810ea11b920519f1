"""What an operator does with jobs across tenants: find them (by status, error code,
tenant, model, time), read their attempts, and re-run them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from aijobs import cursor as cursor_of
from aijobs.db import session_scope
from aijobs.errors import Conflict, InvalidRequest, NotFound
from aijobs.jobs import transitions
from aijobs.jobs.transitions import STATUSES, TERMINAL
from aijobs.jobs.view import row_of
from aijobs.models import Attempt, Job, Tenant
from aijobs.money import usd
from aijobs.tenants import audit

BULK_CAP = 10_000
FILTER_FIELDS = ("status", "error_code", "tenant", "model", "since", "until")
NO_FILTER = (
    "a bulk re-run needs at least one filter: status, error_code, tenant, model, since or until"
)
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
        created, last_id = cursor_of.read_keyset(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
        )
    rows = session.execute(
        query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    ).all()
    next_cursor = (
        cursor_of.keyset(rows[limit - 1][0].created_at, rows[limit - 1][0].id)
        if len(rows) > limit
        else None
    )
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
            "cost_usd": usd(row.cost_usd),
            "cost_estimated": row.cost_estimated,
            "worker": row.worker,
            "kind": row.kind,
            "checks": row.checks,
        }
        for row in rows
    ]


@dataclass
class Rerun:
    requeued: list[uuid.UUID] = field(default_factory=list)  # published
    answered: list[uuid.UUID] = field(default_factory=list)  # cache hits or followers
    skipped: dict[str, str] = field(default_factory=dict)  # id -> why

    @property
    def count(self) -> int:
        return len(self.requeued) + len(self.answered)


class RerunRefused(Conflict):
    """The one job asked for cannot re-run (it has not finished)."""


def rerun(
    ids: Sequence[uuid.UUID],
    *,
    actor: str,
    action: str,
    detail: dict[str, Any],
    publish: Callable[[uuid.UUID], object],
    single: bool = False,
    batch: int = 100,
    progress: Callable[[int, int], None] | None = None,
) -> Rerun:
    """The one re-run path: in units of `batch` jobs, lock and re-queue each
    (transitions.rerun), audit, commit, then publish what was re-queued. `single`: the
    one job must re-run, else RerunRefused and nothing is written."""
    outcome = Rerun()
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        published = len(outcome.requeued)
        with session_scope() as session:
            conn = session.connection()
            for job_id in chunk:
                done = transitions.rerun(conn, job_id)
                if done.skipped is not None:
                    if single:
                        raise RerunRefused(f"job {job_id} cannot re-run: {done.skipped}")
                    outcome.skipped[str(job_id)] = done.skipped
                else:
                    (outcome.requeued if done.publish else outcome.answered).append(job_id)
            ids_now = {"ids": [str(i) for i in chunk]}
            audit.record(session, action, actor, **ids_now, **detail, count=outcome.count)
        for job_id in outcome.requeued[published:]:
            publish(job_id)
        if progress is not None:
            progress(min(start + batch, len(ids)), len(ids))
    return outcome


def bulk_filter(given: Mapping[str, Any]) -> JobFilter:
    """A bulk re-run's filter from the fields its caller gave (those not given absent):
    at least one must be set, since "every failed job of every tenant" is never what an
    empty request means; `status`, when not given, is failed."""
    sent = {name: value for name, value in given.items() if name in FILTER_FIELDS}
    if all(value is None for value in sent.values()):
        raise InvalidRequest(NO_FILTER)
    return JobFilter(**{"status": "failed", **sent})


def select_for_rerun(session: Session, where: JobFilter) -> list[uuid.UUID]:
    if all(getattr(where, name) is None for name in FILTER_FIELDS):
        raise InvalidRequest(NO_FILTER)
    query = where.apply(select(Job.id)).where(Job.status.in_(TERMINAL))
    ids = list(session.scalars(query.order_by(Job.created_at).limit(BULK_CAP + 1)))
    if len(ids) > BULK_CAP:
        raise InvalidRequest(f"the filter matches more than {BULK_CAP} jobs; narrow it")
    return ids
