"""The job state machine on the worker's side, guarded in SQL.

Every transition is an `UPDATE ... WHERE status = ...` (and, while running, `AND
lease_owner = me`), so a redelivered message or a worker that lost its lease can
never run a finished job again nor record an attempt twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from aijobs.models import Attempt, Job

SWEEP_LOCK_KEY = 0x61696A6F  # "aijo": one sweeper at a time across all workers


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def claim(session: Session, job_id: uuid.UUID, owner: str, lease_s: float) -> Job | None:
    """queued (and due) -> running under our lease; None if someone else has it or it ended."""
    row = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == "queued",
            func.coalesce(Job.next_attempt_at, func.now()) <= func.now(),
        )
        .values(
            status="running",
            lease_owner=owner,
            lease_expires_at=func.now() + _seconds(lease_s),
            started_at=func.coalesce(Job.started_at, func.now()),
            next_attempt_at=None,
        )
        .returning(Job.id)
    ).first()
    if row is None:
        return None
    # A call still marked started belongs to a worker that died mid-call.
    session.execute(
        update(Attempt)
        .where(Attempt.job_id == job_id, Attempt.outcome == "started")
        .values(
            outcome="interrupted",
            finished_at=func.now(),
            error_code="internal",
            error_message="the worker was lost during the call",
        )
    )
    return session.get(Job, job_id, populate_existing=True)


def begin_attempt(session: Session, job: Job, owner: str, model: str) -> int | None:
    """Count and record a provider call before it is made; None if the job is no longer ours."""
    attempt_no = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "running", Job.lease_owner == owner)
        .values(attempts=Job.attempts + 1)
        .returning(Job.attempts)
    ).scalar()
    if attempt_no is None:
        return None
    session.add(
        Attempt(
            job_id=job.id,
            tenant_id=job.tenant_id,
            attempt_no=attempt_no,
            model=model,
            worker=owner,
            outcome="started",
            started_at=func.now(),
            input_tokens=0,
            output_tokens=0,
            cost_usd=Decimal(0),
        )
    )
    session.flush()
    return attempt_no


@dataclass(frozen=True)
class CallRecord:
    """What one provider call cost and how it ended."""

    outcome: str  # succeeded | failed
    latency_ms: int
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    error_code: str | None = None
    error_message: str | None = None
    http_status: int | None = None


def finish_attempt(session: Session, job_id: uuid.UUID, attempt_no: int, call: CallRecord) -> None:
    """Complete the attempt row and add its usage to the job, whatever the job's status now:
    a call that was made keeps its cost even if the job was cancelled meanwhile."""
    updated = session.execute(
        update(Attempt)
        .where(
            Attempt.job_id == job_id,
            Attempt.attempt_no == attempt_no,
            Attempt.outcome == "started",
        )
        .values(
            outcome=call.outcome,
            finished_at=func.now(),
            latency_ms=call.latency_ms,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cost_usd=call.cost_usd,
            error_code=call.error_code,
            error_message=call.error_message,
            http_status=call.http_status,
        )
        .returning(Attempt.id)
    ).first()
    if updated is None:  # already closed by a sweeper: never count it twice
        return
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            input_tokens=Job.input_tokens + call.input_tokens,
            output_tokens=Job.output_tokens + call.output_tokens,
            cost_usd=Job.cost_usd + call.cost_usd,
        )
    )


def _end(session: Session, job_id: uuid.UUID, owner: str, values: dict[str, Any]) -> bool:
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, **values)
        .returning(Job.id)
    ).first()
    return row is not None


def succeed(session: Session, job_id: uuid.UUID, owner: str, result: dict[str, Any]) -> bool:
    return _end(
        session,
        job_id,
        owner,
        {"status": "succeeded", "finished_at": func.now(), "result": result},
    )


def fail(
    session: Session,
    job_id: uuid.UUID,
    owner: str,
    *,
    code: str,
    message: str,
    retryable: bool,
    result: dict[str, Any] | None = None,
) -> bool:
    return _end(
        session,
        job_id,
        owner,
        {
            "status": "failed",
            "finished_at": func.now(),
            "error_code": code,
            "error_message": message[:2000],
            "error_retryable": retryable,
            "result": result,
        },
    )


def schedule_retry(session: Session, job_id: uuid.UUID, owner: str, delay_s: float) -> bool:
    """Back to queued with a due time in Postgres: the wait holds no worker slot and no
    delayed broker message, and survives any restart. The sweeper publishes it when due."""
    return _end(
        session,
        job_id,
        owner,
        {
            "status": "queued",
            "next_attempt_at": func.now() + _seconds(delay_s),
            "enqueued_at": func.now(),
        },
    )


def renew_leases(session: Session, owner: str, lease_s: float) -> int:
    result = session.execute(
        update(Job)
        .where(Job.lease_owner == owner, Job.status == "running")
        .values(lease_expires_at=func.now() + _seconds(lease_s))
        .returning(Job.id)
    )
    return len(result.all())


def sweep(
    session: Session, *, requeue_after_s: float, queue_empty: bool, batch: int = 1000
) -> list[uuid.UUID]:
    """Jobs Postgres says must run now but the broker may not hold: publish them (again).

    - running jobs whose worker stopped renewing its lease go back to queued;
    - retries whose due time has come;
    - queued jobs not picked up for requeue_after_s (sooner when the queue is empty,
      as after a broker restart or FLUSHDB).
    A duplicate message is harmless: the claim lets only one run.
    """
    got_lock = session.execute(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK_KEY))).scalar()
    if not got_lock:
        return []
    ids: list[uuid.UUID] = []
    lapsed = session.execute(
        text(
            """
            UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                   enqueued_at = now()
            WHERE id IN (SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now()
                         LIMIT :batch FOR UPDATE SKIP LOCKED)
            RETURNING id
            """
        ),
        {"batch": batch},
    )
    ids.extend(row[0] for row in lapsed)
    stale_s = min(2.0, requeue_after_s) if queue_empty else requeue_after_s
    due = session.execute(
        text(
            """
            UPDATE jobs SET enqueued_at = now()
            WHERE id IN (
                SELECT id FROM jobs
                WHERE status = 'queued'
                  AND coalesce(next_attempt_at, '-infinity') <= now()
                  AND (enqueued_at < next_attempt_at
                       OR enqueued_at < now() - make_interval(secs => :stale))
                ORDER BY coalesce(next_attempt_at, enqueued_at)
                LIMIT :batch FOR UPDATE SKIP LOCKED)
            RETURNING id
            """
        ),
        {"batch": batch, "stale": stale_s},
    )
    ids.extend(row[0] for row in due)
    return ids
