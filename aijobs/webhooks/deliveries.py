"""Webhook deliveries on the worker's side, guarded in SQL like the job state machine.

A trigger on jobs creates a pending delivery, due now, when a job ends. The sweeper
publishes due ones; the task claims one with `UPDATE ... WHERE status = 'pending'`
(a duplicate message finds it taken and does nothing) under a lease its worker
renews; the settle logs the attempt and sets the next due time, or ends it. One
that cannot be sent now (its tenant's cap, or the worker's webhook threads, are
full) is deferred: still pending, due a little later.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from aijobs.lost_work import Waiting

WEBHOOK_SWEEP_LOCK_KEY = 0x61696A77  # "aijw": one webhook sweeper at a time
# Due deliveries published again per sweep even when the broker's queue looks full.
TRICKLE = 25

_CLAIM = text(
    """
    WITH claimed AS (
        UPDATE webhook_deliveries SET status = 'sending', tries = tries + 1,
               attempts = attempts + 1, lease_owner = :owner,
               lease_expires_at = now() + make_interval(secs => :lease_s)
        WHERE id = :id AND status = 'pending' AND next_attempt_at <= now()
        RETURNING id, job_id, tenant_id, seq, event, url, body, tries, attempts, created_at,
                  batch_id
    )
    SELECT c.id, c.job_id, c.seq, c.event, c.url, c.body, c.tries, c.attempts, c.created_at,
           t.webhook_secret,
           CASE WHEN t.previous_webhook_secret_expires_at > now()
                THEN t.previous_webhook_secret END,
           c.batch_id
    FROM claimed c JOIN tenants t ON t.id = c.tenant_id
    """
)
_DUE_TENANT = text(
    """
    SELECT tenant_id FROM webhook_deliveries
    WHERE id = :id AND status = 'pending' AND next_attempt_at <= now()
    """
)
# Not sent now (the tenant's cap, or this worker's webhook threads, are full): due a
# little later, when the sweeper publishes it again. No attempt is made or counted.
_DEFER = text(
    """
    UPDATE webhook_deliveries
    SET next_attempt_at = greatest(next_attempt_at, now() + make_interval(secs => :delay_s))
    WHERE id = :id AND status = 'pending'
    """
)
_SET_BODY = text(
    """
    UPDATE webhook_deliveries SET body = coalesce(body, :body) WHERE id = :id
    RETURNING body
    """
)
_JOB_ROW = text("SELECT * FROM jobs WHERE id = :id")
_BATCH_ROW = text("SELECT * FROM batches WHERE id = :id")

# Log the attempt and set what comes next, only while the delivery is still ours; the
# job's webhook object follows its latest delivery.
_SETTLE = text(
    """
    WITH settled AS (
        UPDATE webhook_deliveries SET status = :status,
               next_attempt_at = CASE WHEN :again
                                      THEN now() + make_interval(secs => :delay_s) END,
               finished_at = CASE WHEN :again THEN NULL ELSE now() END,
               lease_owner = NULL, lease_expires_at = NULL
        WHERE id = :id AND status = 'sending' AND lease_owner = :owner
        RETURNING id, job_id, seq, attempts, status
    ), logged AS (
        INSERT INTO webhook_attempts (delivery_id, job_id, attempt_no, webhook_id, outcome,
                                      started_at, latency_ms, status_code, error,
                                      response_body)
        SELECT id, job_id, attempts, :webhook_id, :outcome, :started_at, :latency_ms,
               :status_code, :error, :response_body
        FROM settled
    ), job AS (
        UPDATE jobs j SET webhook_status = s.status, webhook_attempts = s.attempts
        FROM settled s
        WHERE j.id = s.job_id
          AND s.seq = (SELECT max(seq) FROM webhook_deliveries WHERE job_id = s.job_id)
    )
    SELECT count(*) FROM settled
    """
)
_RENEW = text(
    """
    UPDATE webhook_deliveries SET lease_expires_at = now() + make_interval(secs => :lease_s)
    WHERE id = ANY(:ids) AND lease_owner = :owner AND status = 'sending'
    """
)

# A worker that died mid-attempt: the attempt is logged as lost and counts; the
# delivery is due again at once (or failed, when that was the last try).
_LAPSED = text(
    """
    WITH lapsed AS (
        UPDATE webhook_deliveries
        SET status = CASE WHEN tries > :max_retries THEN 'failed' ELSE 'pending' END,
            next_attempt_at = CASE WHEN tries > :max_retries THEN NULL ELSE now() END,
            finished_at = CASE WHEN tries > :max_retries THEN now() END,
            enqueued_at = now(), lease_owner = NULL, lease_expires_at = NULL
        WHERE id IN (SELECT id FROM webhook_deliveries
                     WHERE status = 'sending' AND lease_expires_at < now()
                     LIMIT :batch FOR UPDATE SKIP LOCKED)
        RETURNING id, job_id, batch_id, seq, attempts, status
    ), logged AS (
        INSERT INTO webhook_attempts (delivery_id, job_id, attempt_no, webhook_id, outcome,
                                      started_at, error)
        SELECT id, job_id, attempts,
               'msg_' || replace(coalesce(job_id, batch_id)::text, '-', '') || '_' || seq,
               'failed', now(), 'the worker was lost during the attempt'
        FROM lapsed
        ON CONFLICT (delivery_id, attempt_no) DO NOTHING
    ), job AS (
        UPDATE jobs j SET webhook_status = l.status, webhook_attempts = l.attempts
        FROM lapsed l
        WHERE j.id = l.job_id
          AND l.seq = (SELECT max(seq) FROM webhook_deliveries WHERE job_id = l.job_id)
    )
    SELECT id FROM lapsed WHERE status = 'pending'
    """
)
_DUE = text(
    """
    UPDATE webhook_deliveries SET enqueued_at = now()
    WHERE id IN (SELECT id FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= now()
                   AND (enqueued_at IS NULL OR enqueued_at < next_attempt_at)
                 ORDER BY next_attempt_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id
    """
)
_STALE_WHERE = """status = 'pending' AND next_attempt_at <= now()
                  AND enqueued_at < now() - make_interval(secs => :stale_s)"""
_STALE = Waiting.of("webhook_deliveries", _STALE_WHERE)

# Send the job's latest delivery again: a new run of the retry schedule, same
# webhook-id and body. A delivery being sent right now is left to finish.
_REDELIVER = text(
    """
    WITH again AS (
        UPDATE webhook_deliveries SET status = 'pending', tries = 0, next_attempt_at = now(),
               enqueued_at = now(), finished_at = NULL
        WHERE id = (SELECT id FROM webhook_deliveries WHERE job_id = :job_id
                    ORDER BY seq DESC LIMIT 1)
          AND status IN ('pending', 'delivered', 'failed')
        RETURNING id, job_id
    ), job AS (
        UPDATE jobs SET webhook_status = 'pending' WHERE id IN (SELECT job_id FROM again)
    )
    SELECT id FROM again
    """
)
_LATEST = text("SELECT id FROM webhook_deliveries WHERE job_id = :job_id ORDER BY seq DESC LIMIT 1")
_ATTEMPTS = text(
    """
    SELECT a.webhook_id, d.event, a.attempt_no, a.outcome, a.started_at, a.status_code,
           a.error, a.latency_ms, a.response_body
    FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
    WHERE a.job_id = :job_id
    ORDER BY d.seq, a.attempt_no
    """
)


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    job_id: uuid.UUID | None  # None for a batch's delivery
    seq: int
    event: str
    url: str
    body: str | None  # None before the first attempt
    tries: int  # this one included, in the current run of the schedule
    attempt_no: int
    created_at: datetime
    secrets: tuple[str, ...]  # the current secret, then the previous one while it lasts
    batch_id: uuid.UUID | None = None  # a batch's delivery: batch.completed | cancelled

    @property
    def subject_id(self) -> uuid.UUID:
        """The job (or batch) the event is about: it names the webhook-id."""
        subject = self.job_id if self.job_id is not None else self.batch_id
        assert subject is not None
        return subject


def claim(conn: Connection, delivery_id: int, owner: str, lease_s: float) -> ClaimedDelivery | None:
    """Take a due delivery under our lease; None when it is not ours to send."""
    row = conn.execute(_CLAIM, {"id": delivery_id, "owner": owner, "lease_s": lease_s}).first()
    if row is None:
        return None
    secrets = (row[9],) if row[10] is None else (row[9], row[10])
    return ClaimedDelivery(
        id=row[0],
        job_id=row[1],
        seq=row[2],
        event=row[3],
        url=row[4],
        body=row[5],
        tries=row[6],
        attempt_no=row[7],
        created_at=row[8],
        secrets=secrets,
        batch_id=row[11],
    )


def tenant_if_due(conn: Connection, delivery_id: int) -> uuid.UUID | None:
    """The tenant of a delivery that is pending and due; None when there is nothing
    to send (taken, ended, or not due yet)."""
    tenant_id = conn.execute(_DUE_TENANT, {"id": delivery_id}).scalar()
    return None if tenant_id is None else uuid.UUID(str(tenant_id))


def defer(conn: Connection, delivery_id: int, delay_s: float) -> bool:
    """pending -> pending, due in delay_s (not sooner than it was): the delivery waits in
    Postgres instead of holding a thread. False when it is no longer pending."""
    return conn.execute(_DEFER, {"id": delivery_id, "delay_s": delay_s}).rowcount > 0


def job_row(conn: Connection, job_id: uuid.UUID) -> dict[str, object]:
    return dict(conn.execute(_JOB_ROW, {"id": job_id}).mappings().one())


def batch_row(conn: Connection, batch_id: uuid.UUID) -> dict[str, object]:
    return dict(conn.execute(_BATCH_ROW, {"id": batch_id}).mappings().one())


def fix_body(conn: Connection, delivery_id: int, body: str) -> str:
    """Keep the first body built for a delivery: every attempt sends the same bytes."""
    return str(conn.execute(_SET_BODY, {"id": delivery_id, "body": body}).scalar_one())


@dataclass(frozen=True)
class AttemptRecord:
    webhook_id: str
    started_at: datetime
    latency_ms: int
    status_code: int | None
    error: str | None
    response_body: str | None


def settle(
    conn: Connection,
    delivery: ClaimedDelivery,
    owner: str,
    attempt: AttemptRecord,
    *,
    status: str,
    delay_s: float = 0.0,
) -> bool:
    """status: delivered | failed | pending (again in delay_s). False when the delivery
    left our hands (our lease lapsed): then nothing is written."""
    params = {
        "id": delivery.id,
        "owner": owner,
        "status": status,
        "again": status == "pending",
        "delay_s": delay_s,
        "outcome": "delivered" if status == "delivered" else "failed",
        "webhook_id": attempt.webhook_id,
        "started_at": attempt.started_at,
        "latency_ms": attempt.latency_ms,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "response_body": attempt.response_body,
    }
    return bool(conn.execute(_SETTLE, params).scalar())


def renew_leases(
    conn: Connection, owner: str, delivery_ids: Collection[int], lease_s: float
) -> None:
    """sending (ours) -> sending a lease_s longer, for the deliveries being sent now."""
    if delivery_ids:
        conn.execute(_RENEW, {"owner": owner, "ids": list(delivery_ids), "lease_s": lease_s})


def due_for_publish(
    conn: Connection,
    *,
    queue_length: int,
    stale_s: float,
    max_retries: int,
    batch: int = 1000,
) -> list[int]:
    """Mark and return the deliveries to publish (call inside a transaction): lapsed
    leases, due ones not yet published for this due time, and due ones published long
    ago (the broker lost them: aijobs/lost_work.py)."""
    locked = conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": WEBHOOK_SWEEP_LOCK_KEY}
    )
    if not locked.scalar():
        return []
    ids = [row[0] for row in conn.execute(_LAPSED, {"batch": batch, "max_retries": max_retries})]
    ids += [row[0] for row in conn.execute(_DUE, {"batch": batch})]
    ids += _STALE.lost(
        conn, queue_length=queue_length, stale_s=stale_s, batch=batch, trickle=TRICKLE
    )
    return ids


def redeliver(conn: Connection, job_id: uuid.UUID) -> int | None:
    """Make the job's latest delivery due again; its id (also when it is being sent
    right now), or None when the job has no delivery."""
    again = conn.execute(_REDELIVER, {"job_id": job_id}).scalar()
    if again is not None:
        return int(again)
    latest = conn.execute(_LATEST, {"job_id": job_id}).scalar()
    return int(latest) if latest is not None else None


def attempts_of(conn: Connection, job_id: uuid.UUID) -> list[dict[str, object]]:
    """The job's delivery attempts, oldest first, as the API lists them."""
    return [
        {
            "webhook_id": row.webhook_id,
            "event": row.event,
            "attempt": row.attempt_no,
            "outcome": row.outcome,
            "attempted_at": row.started_at.isoformat(),
            "status_code": row.status_code,
            "error": row.error,
            "latency_ms": row.latency_ms,
            "response_body": row.response_body,
        }
        for row in conn.execute(_ATTEMPTS, {"job_id": job_id})
    ]
