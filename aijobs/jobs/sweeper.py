"""What the sweeper must publish: jobs Postgres says must run now that the broker may
not hold. Publishing is the worker's part; this module only decides and marks. It also
purges what the retention period has expired."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

from aijobs.jobs import transitions

SWEEP_LOCK_KEY = 0x61696A6F  # "aijo": one sweeper at a time across all workers
LOST_CALL_GRACE_S = 30
# Unclaimed jobs published again per sweep even when the broker's queue looks full.
TRICKLE = 25


def lock(conn: Connection) -> bool:
    """The sweep's lock, for this transaction: one sweeper at a time across all workers."""
    locked = conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SWEEP_LOCK_KEY})
    return bool(locked.scalar())


def due_for_publish(
    conn: Connection,
    *,
    queue_length: int,
    stale_s: float,
    batch: int = 1000,
    trickle: int = TRICKLE,
) -> list[uuid.UUID]:
    """Mark and return the jobs to publish (call inside a transaction):

    - calls whose worker is gone are closed (charged at their reservation);
    - running jobs whose worker stopped renewing its lease go back to queued;
    - followers whose leader ended without passing its outcome on;
    - retries whose due time has come;
    - jobs waiting for budget that fit now (room freed by lost calls released above, a
      raised budget, a new day), or that can never fit (their claim fails them);
    - queued jobs not claimed for longer than stale_s: as many as the fair queue holds
      fewer jobs than there are such jobs (a restart or FLUSHDB lost them), and
      at least `trickle` whatever its length (a long queue can miss one too).
    A duplicate message is harmless: the claim lets only one run.
    """
    if not lock(conn):
        return []
    transitions.close_lost_calls(conn, LOST_CALL_GRACE_S)
    ids = transitions.requeue_lapsed(conn, batch)
    ids += transitions.settle_orphans(conn)
    ids += transitions.mark_due_retries(conn, batch)
    ids += transitions.wake_budget_waiters(conn, batch=batch)
    ids += transitions.mark_unclaimed(
        conn, queue_length=queue_length, stale_s=stale_s, batch=batch, trickle=trickle
    )
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


# Retention: jobs purged per statement, and how often a sweeper looks when the last
# look found less than a batch (a full batch: it goes on at the next pass). Small
# batches keep each purge a short statement beside the claims and settles.
PURGE_BATCH = 500
PURGE_EVERY_S = 10.0


def purge_expired(conn: Connection, retention_days: int, batch: int = PURGE_BATCH) -> int:
    """Purge up to `batch` jobs that ended more than retention_days ago (0: retention
    off, nothing is purged). Returns how many were purged."""
    if retention_days <= 0:
        return 0
    return transitions.purge_expired(conn, retention_days, batch)
