"""The batch state machine: every transition of a batch is named here, over SQL guarded
by the state it leaves, so each is safe to run twice.

    create      (none)                        -> queued, with its jobs (one transaction)
    start       queued                        -> running: a job left queued
    complete    queued | running              -> completed: no job queued or running
    cancel      queued | running              -> cancelling: its queued jobs cancelled
                                                 (batch_settle, told by aijobs.cancel_batch)
    end cancel  cancelling                    -> cancelled: no job running any more
    reopen      completed | cancelled         -> running | cancelling: an admin re-ran
                                                 one of its jobs; it ends again (as
                                                 completed | cancelled) when that job
                                                 ends, with one more webhook delivery

`start`, `complete`, `end cancel` and `reopen` are the SQL function batch_settle
(migrations 0012 and 0016), run by the statement trigger on jobs that keeps a batch's
counters: every way a job changes status (the worker's settle, a follower taking its
leader's outcome, a cancel, an admin re-run) moves the counters, and the batch ends in
the statement that ends its last job, exactly once, making its webhook delivery
(batch.completed or batch.cancelled; one more each time a reopened batch ends again).
`settle` runs the same function after an intake whose jobs all ended at once (cache
hits). Drawn in docs/state-machine.md.

Batch jobs are inserted in bulk, CHUNK rows a statement, each statement folding in the
exact-cache look-up like a single submit; a line identical to a job in flight (in this
batch or before it) follows that job, like a single submit (`follow`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from aijobs.errors import Conflict
from aijobs.jobs import transitions as job_transitions

CHUNK = 2000
PUBLISH_NOW = 1000
BATCH_STATUSES = ("queued", "running", "completed", "cancelling", "cancelled")

_CREATE = text(
    """
    INSERT INTO batches (id, tenant_id, status, tier, metadata, webhook_url, total, queued,
                         running, succeeded, failed, cancelled, cost_usd, idempotency_key,
                         body_hash, created_at)
    VALUES (:id, :tenant_id, 'queued', :tier, :metadata, :webhook_url, :total, 0, 0, 0, 0, 0,
            0, :idempotency_key, :body_hash, now())
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING id
    """
).bindparams(bindparam("metadata", type_=JSONB))

_COLUMNS = """id, tenant_id, status, model, current_model, model_attempts, task, request,
    metadata, webhook_url, max_attempts, timeout_s, attempts, input_tokens, output_tokens,
    cost_usd, cache_hit, saved_usd, fingerprint, leader_id, followers, result, started_at,
    finished_at, created_at, enqueued_at, reserve_usd, prompt, batch_id, custom_id,
    batch_index, checks, priority, tier"""
_RECORD = """r(id uuid, model text, task text, request jsonb, metadata jsonb, webhook_url text,
    max_attempts int, timeout_s numeric, fingerprint text, reserve_usd jsonb, prompt jsonb,
    custom_id text, batch_index int, priority text)"""
# Published by the API now, or (a time long past) left for the sweeper: see _TO_PUBLISH.
_ENQUEUED = f"""CASE WHEN r.batch_index < {PUBLISH_NOW} THEN now()
    ELSE timestamptz 'epoch' + r.batch_index * interval '1 microsecond' END"""
# The single submit's insert (aijobs/jobs/transitions.py), for many rows: a cache hit
# is inserted succeeded; a row identical to a job in flight is not inserted (follow).
_INSERT = text(
    f"""
    INSERT INTO jobs ({_COLUMNS})
    SELECT r.id, :tenant_id, CASE WHEN hit.result IS NULL THEN 'queued' ELSE 'succeeded' END,
           r.model, coalesce(hit.model, r.model), 0, r.task, r.request, r.metadata,
           r.webhook_url, r.max_attempts, r.timeout_s, 0, 0, 0, 0, hit.result IS NOT NULL,
           coalesce(hit.cost_usd, 0), r.fingerprint, NULL, 0, hit.result,
           CASE WHEN hit.result IS NULL THEN NULL ELSE now() END,
           CASE WHEN hit.result IS NULL THEN NULL ELSE now() END, now(), {_ENQUEUED},
           r.reserve_usd, r.prompt, :batch_id, r.custom_id, r.batch_index, hit.checks, r.priority,
           :tier
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS {_RECORD}
    LEFT JOIN cache_entries hit
      ON hit.tenant_id = :tenant_id AND hit.fingerprint = r.fingerprint
     AND hit.expires_at > now()
    ORDER BY r.batch_index
    ON CONFLICT (tenant_id, fingerprint)
        WHERE leader_id IS NULL AND status IN ('queued', 'running') DO NOTHING
    RETURNING batch_index
    """
)
_INSERT_FOLLOWER = text(
    f"""
    INSERT INTO jobs ({_COLUMNS})
    VALUES (:id, :tenant_id, 'queued', :model, :model, 0, :task, :request, :metadata,
            :webhook_url, :max_attempts, :timeout_s, 0, 0, 0, 0, false, 0, :fingerprint,
            :leader_id, 0, NULL, NULL, NULL, now(), now(), :reserve_usd, :prompt, :batch_id,
            :custom_id, :batch_index, NULL, :priority, :tier)
    """
).bindparams(
    bindparam("request", type_=JSONB),
    bindparam("metadata", type_=JSONB),
    bindparam("reserve_usd", type_=JSONB),
    bindparam("prompt", type_=JSONB(none_as_null=True)),
)
# The counters of a batch just inserted (its jobs are not visible to anyone else yet).
_COUNT = text(
    """
    UPDATE batches b SET queued = c.queued, succeeded = c.succeeded, cost_usd = c.cost
    FROM (SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                 count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                 coalesce(sum(cost_usd), 0) AS cost
          FROM jobs WHERE batch_id = :id) c
    WHERE b.id = :id
    """
)
_SETTLE = text("SELECT batch_settle(:id)")
# The first PUBLISH_NOW queued leaders are published by the API after the commit; the
# others are inserted as never published (enqueued_at long past, in input order), so
# the sweeper's look for lost messages (aijobs/lost_work.py) publishes them as the
# broker holds fewer messages than there are such jobs, up to a sweep's batch a pass.
# Jobs of the batch tier are not published: the provider-batch dispatcher takes them.
_TO_PUBLISH = text(
    """
    SELECT id FROM jobs
    WHERE batch_id = :id AND batch_index < :now AND status = 'queued' AND leader_id IS NULL
      AND tier = 'standard'
    ORDER BY batch_index
    """
)
# Within this transaction, batch_settle makes the batch cancelling (see migration 0012).
_CANCELLING = text("SELECT set_config('aijobs.cancel_batch', CAST(:id AS text), true)")
# The job's own cancel (aijobs/jobs/transitions.py), for all the batch's queued jobs in
# one statement; running jobs finish.
_CANCEL_QUEUED = text(
    """
    UPDATE jobs SET status = 'cancelled', finished_at = now(), error_code = 'cancelled',
           error_message = 'cancelled with its batch', error_retryable = false,
           lease_owner = NULL, lease_expires_at = NULL
    WHERE batch_id = :id AND status = 'queued'
    RETURNING id, leader_id IS NULL AND followers > 0 AS led
    """
)


def create(conn: Connection, params: Mapping[str, Any]) -> bool:
    """(none) -> queued (an empty batch row; its jobs follow). False when a batch with
    this Idempotency-Key exists already."""
    return conn.execute(_CREATE, params).first() is not None


def insert_jobs(
    conn: Connection,
    tenant_id: uuid.UUID,
    batch_id: uuid.UUID,
    rows: Sequence[dict[str, Any]],
    tier: str = "standard",
) -> None:
    """The batch's jobs, CHUNK rows a statement, queued for `tier`; rows identical to a
    job in flight follow it (one statement each: they are few)."""
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        params = {
            "tenant_id": tenant_id,
            "batch_id": batch_id,
            "rows": json.dumps(chunk),
            "tier": tier,
        }
        inserted = {row[0] for row in conn.execute(_INSERT, params)}
        for row in chunk:
            if row["batch_index"] not in inserted:
                _follow(conn, tenant_id, batch_id, row, tier)


def _follow(
    conn: Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID, row: dict[str, Any], tier: str
) -> None:
    """Follow the identical job in flight; if it ended meanwhile, insert again (a hit
    or a leader now). As the single submit does, three rounds at most."""
    params = {**row, "tenant_id": tenant_id, "batch_id": batch_id, "tier": tier}
    one = {"tenant_id": tenant_id, "batch_id": batch_id, "rows": json.dumps([row]), "tier": tier}
    for _ in range(3):
        leader = conn.execute(job_transitions.JOIN_LIVE_LEADER, params).scalar()
        if leader is not None:
            conn.execute(_INSERT_FOLLOWER, {**params, "leader_id": leader})
            return
        if conn.execute(_INSERT, one).first() is not None:
            return
    raise Conflict("an identical request kept changing state; try again")


def count(conn: Connection, batch_id: uuid.UUID) -> None:
    """The counters of a batch whose jobs were just inserted; then start or complete
    it (a batch of cache hits is complete at once, its webhook made)."""
    conn.execute(_COUNT, {"id": batch_id})
    settle(conn, batch_id)


def settle(conn: Connection, batch_id: uuid.UUID) -> None:
    """start / complete / end cancel, as its counters say (batch_settle in SQL)."""
    conn.execute(_SETTLE, {"id": batch_id})


def to_publish(conn: Connection, batch_id: uuid.UUID) -> list[uuid.UUID]:
    """The first PUBLISH_NOW of the batch's queued leaders, in input order, for the API
    to publish; the rest are left to the sweeper (a publish costs the API about a
    millisecond: 50,000 would hold it for a minute)."""
    return [row[0] for row in conn.execute(_TO_PUBLISH, {"id": batch_id, "now": PUBLISH_NOW})]


def cancel(conn: Connection, batch_id: uuid.UUID) -> list[uuid.UUID]:
    """queued | running -> cancelling, its queued jobs cancelled first (the trigger ends
    it as cancelled when none is running); a batch that ended is left as it is. The
    jobs' row locks are taken before the batch's, like every claim and settle: no
    deadlock with the workers. Returns the heirs to publish: a cancelled leader's
    followers outside the batch go on, led by the oldest."""
    conn.execute(_CANCELLING, {"id": batch_id})
    heirs = []
    for row in conn.execute(_CANCEL_QUEUED, {"id": batch_id}).all():
        if row.led:
            heir = job_transitions.promote_heir(conn, row.id)
            if heir is not None:
                heirs.append(heir)
    settle(conn, batch_id)  # cancelling (its jobs' trigger may have ended it already)
    return heirs


_ROW = text("SELECT * FROM batches WHERE id = :id AND tenant_id = :tenant_id")


def row(conn: Connection, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> RowMapping | None:
    """A tenant's batch (another tenant's is None, like a missing one)."""
    return conn.execute(_ROW, {"id": batch_id, "tenant_id": tenant_id}).mappings().first()
