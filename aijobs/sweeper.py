"""What the sweeper must publish: jobs Postgres says must run now that the broker may
not hold. Publishing is the worker's part; this module only decides and marks."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

from aijobs import coalescing
from aijobs.broker_gap import Waiting

SWEEP_LOCK_KEY = 0x61696A6F  # "aijo": one sweeper at a time across all workers
LOST_CALL_GRACE_S = 30

# Calls whose worker is gone: the job's lease lapsed, or the job left running (cancelled)
# longer ago than the call could last. Their usage never reached us, so each is charged
# at its reservation (the most it can have cost) and its budget hold is released.
_LOST_CALLS = text(
    """
    WITH lost AS (
        UPDATE attempts a SET outcome = 'interrupted', finished_at = now(),
               error_code = 'internal', cost_usd = a.reserved_usd, cost_estimated = true,
               error_message = 'the worker was lost during the call; charged at its reservation'
        FROM jobs j
        WHERE a.job_id = j.id AND a.outcome = 'started'
          AND ((j.status = 'running' AND j.lease_expires_at < now())
               OR (j.status <> 'running'
                   AND a.started_at < now() - make_interval(secs => j.timeout_s + :grace_s)))
        RETURNING a.job_id, a.tenant_id, a.reserved_usd, a.budget_held
    ), charged AS (
        UPDATE jobs j SET cost_usd = j.cost_usd + s.total
        FROM (SELECT job_id, sum(reserved_usd) AS total FROM lost GROUP BY job_id) s
        WHERE j.id = s.job_id
    ), released AS (
        UPDATE budget_counters c SET
            day_reserved = greatest(c.day_reserved - s.total, 0),
            month_reserved = greatest(c.month_reserved - s.total, 0),
            day_spent = c.day_spent + s.total, month_spent = c.month_spent + s.total
        FROM (SELECT tenant_id, sum(reserved_usd) AS total FROM lost WHERE budget_held
              GROUP BY tenant_id) s
        WHERE c.tenant_id = s.tenant_id
    )
    SELECT count(*) FROM lost
    """
)
_LAPSED = text(
    """
    UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
           enqueued_at = now()
    WHERE id IN (SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now()
                 LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id
    """
)
_DUE_RETRIES = text(
    """
    UPDATE jobs SET enqueued_at = now()
    WHERE id IN (SELECT id FROM jobs
                 WHERE status = 'queued' AND next_attempt_at <= now()
                   AND enqueued_at <= next_attempt_at
                 ORDER BY next_attempt_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id
    """
)
_STALE_WHERE = """status = 'queued' AND leader_id IS NULL
                  AND coalesce(next_attempt_at, '-infinity') <= now()
                  AND enqueued_at < now() - make_interval(secs => :stale_s)"""
_STALE = Waiting.of("jobs", _STALE_WHERE)


def due_for_publish(
    conn: Connection, *, queue_length: int, stale_s: float, batch: int = 1000
) -> list[uuid.UUID]:
    """Mark and return the jobs to publish (call inside a transaction):

    - calls whose worker is gone are closed (charged at their reservation);
    - running jobs whose worker stopped renewing its lease go back to queued;
    - followers whose leader ended without passing its outcome on;
    - retries whose due time has come;
    - queued jobs waiting longer than stale_s, when the broker holds fewer messages
      than there are such jobs (a broker restart or FLUSHDB lost some): the oldest
      ones, as many as are missing. A backlog that is merely long is left alone.
    A duplicate message is harmless: the claim lets only one run.
    """
    locked = conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SWEEP_LOCK_KEY})
    if not locked.scalar():
        return []
    conn.execute(_LOST_CALLS, {"grace_s": LOST_CALL_GRACE_S})
    ids = [row[0] for row in conn.execute(_LAPSED, {"batch": batch})]
    ids += coalescing.settle_orphans(conn)
    ids += [row[0] for row in conn.execute(_DUE_RETRIES, {"batch": batch})]
    ids += _STALE.missing(conn, queue_length=queue_length, stale_s=stale_s, batch=batch)
    return ids


_EXPIRED_CACHE = text(
    """
    DELETE FROM cache_entries WHERE ctid IN (
        SELECT ctid FROM cache_entries WHERE expires_at < now() LIMIT :batch)
    """
)


def purge_expired_cache(conn: Connection, batch: int = 1000) -> int:
    """Expired entries answer nothing (lookups check expires_at); this only frees space."""
    return int(conn.execute(_EXPIRED_CACHE, {"batch": batch}).rowcount)
