"""The provider batch state machine (the batch tier): a row per OpenAI Batch or Anthropic
Message Batch, every transition a guarded statement, safe to run twice.

    create      (none)      -> building: its jobs claimed into it one by one (each claim
                               records the job's call as an attempt naming the row)
    submitting  building    -> submitting: no more jobs; the provider call comes next
    submitted   submitting  -> submitted: the provider's batch id is known
    end         any         -> ended: its results settled; what is still running in it
                               is settled as a failed attempt by the worker first

One worker at a time steps a row: it holds a session advisory lock on it (`try_lock`),
released by Postgres when the worker's connection dies, so a worker SIGKILLed at any
point leaves the row to the next one, which resumes from its state. A job whose
provider batch row is gone or ended while it still runs is handed to the sweeper
(`release_orphans`): its lease lapses, its call is charged at its reservation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, text

OWNER_PREFIX = "pbatch:"
# One former of provider batches at a time across all workers (session lock): batches
# stay as large as the queue allows. Stepping a row takes that row's own lock.
FORM_LOCK_KEY = 0x70626174  # "pbat"


def owner_of(provider_batch_id: uuid.UUID) -> str:
    """The lease owner of the jobs running in a provider batch."""
    return f"{OWNER_PREFIX}{provider_batch_id}"


_MODELS = text(
    """
    SELECT DISTINCT current_model FROM jobs
    WHERE tier = 'batch' AND status = 'queued' AND leader_id IS NULL
      AND coalesce(next_attempt_at, now()) <= now()
    """
)
_QUEUED = text(
    """
    SELECT id FROM jobs
    WHERE tier = 'batch' AND status = 'queued' AND current_model = :model
      AND leader_id IS NULL AND coalesce(next_attempt_at, now()) <= now()
    ORDER BY created_at, id LIMIT :limit
    """
)


def models_waiting(conn: Connection) -> list[str]:
    """The models with jobs queued (and due) for the batch tier."""
    return [row[0] for row in conn.execute(_MODELS)]


def queued(conn: Connection, model: str, limit: int) -> list[uuid.UUID]:
    """Up to `limit` jobs queued for the batch tier on `model`, oldest first."""
    return [row[0] for row in conn.execute(_QUEUED, {"model": model, "limit": limit})]


_CREATE = text(
    """
    INSERT INTO provider_batches (id, provider, model, task, state, requests, created_at,
                                  next_poll_at, polls)
    VALUES (:id, :provider, :model, :task, 'building', 0, now(), now(), 0)
    """
)
_SUBMITTING = text(
    """
    UPDATE provider_batches SET state = 'submitting', next_poll_at = now(),
           requests = (SELECT count(*) FROM attempts WHERE provider_batch_id = :id)
    WHERE id = :id AND state = 'building'
    RETURNING requests
    """
)
_SUBMIT_STARTED = text(
    """
    UPDATE provider_batches SET submit_started_at = now(), requests = :requests,
           input_file_id = CASE WHEN requests = :requests THEN input_file_id END
    WHERE id = :id AND state = 'submitting'
    """
)
_INPUT_FILE = text(
    "UPDATE provider_batches SET input_file_id = :file_id WHERE id = :id AND state = 'submitting'"
)
_SUBMITTED = text(
    """
    UPDATE provider_batches SET state = 'submitted', provider_batch_id = :provider_batch_id,
           submitted_at = now(), next_poll_at = now() + make_interval(secs => :poll_s)
    WHERE id = :id AND state = 'submitting'
    """
)
_POLLED = text(
    """
    UPDATE provider_batches SET provider_status = :status, polls = polls + 1,
           next_poll_at = now() + make_interval(secs => :poll_s)
    WHERE id = :id AND state <> 'ended'
    """
)
_DEFER = text(
    """
    UPDATE provider_batches SET error = :error,
           next_poll_at = now() + make_interval(secs => :delay_s)
    WHERE id = :id AND state <> 'ended'
    """
)
_END = text(
    """
    UPDATE provider_batches SET state = 'ended', ended_at = now(),
           provider_status = coalesce(:status, provider_status), error = :error
    WHERE id = :id AND state <> 'ended'
    """
)
_DUE = text(
    """
    SELECT id FROM provider_batches
    WHERE state <> 'ended' AND next_poll_at <= now()
    ORDER BY next_poll_at LIMIT :limit
    """
)
_ROW = text("SELECT * FROM provider_batches WHERE id = :id")
_ADOPTED = text(
    """
    SELECT provider_batch_id FROM provider_batches
    WHERE provider = :provider AND provider_batch_id IS NOT NULL
      AND created_at > now() - interval '3 days'
    """
)
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(CAST(:id AS text), 7))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(CAST(:id AS text), 7))")
_TRY_FORM_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_FORM_UNLOCK = text("SELECT pg_advisory_unlock(:key)")


def create(
    conn: Connection, provider_batch_id: uuid.UUID, provider: str, model: str, task: str
) -> None:
    """(none) -> building (committed before any job is claimed into it)."""
    params = {"id": provider_batch_id, "provider": provider, "model": model, "task": task}
    conn.execute(_CREATE, params)


def to_submitting(conn: Connection, provider_batch_id: uuid.UUID) -> int | None:
    """building -> submitting; the number of calls in it (None: not building)."""
    row = conn.execute(_SUBMITTING, {"id": provider_batch_id}).first()
    return None if row is None else int(row[0])


def submit_started(conn: Connection, provider_batch_id: uuid.UUID, requests: int) -> None:
    """Before the provider is asked to create a batch of `requests` calls, when no batch
    an earlier try made was found: after a crash, one made since may be ours. An input
    file an earlier try uploaded is kept only if it holds as many calls (a call is only
    ever taken out of a row, as its job is cancelled: the same count, the same calls)."""
    conn.execute(_SUBMIT_STARTED, {"id": provider_batch_id, "requests": requests})


def input_file(conn: Connection, provider_batch_id: uuid.UUID, file_id: str) -> None:
    conn.execute(_INPUT_FILE, {"id": provider_batch_id, "file_id": file_id})


def submitted(
    conn: Connection, provider_batch_id: uuid.UUID, provider_id: str, poll_s: float
) -> None:
    """submitting -> submitted, first polled after poll_s."""
    params = {"id": provider_batch_id, "provider_batch_id": provider_id, "poll_s": poll_s}
    conn.execute(_SUBMITTED, params)


def polled(conn: Connection, provider_batch_id: uuid.UUID, status: str, poll_s: float) -> None:
    conn.execute(_POLLED, {"id": provider_batch_id, "status": status, "poll_s": poll_s})


def defer(conn: Connection, provider_batch_id: uuid.UUID, error: str, delay_s: float) -> None:
    """A step that failed for now (the provider unreachable): again after delay_s."""
    conn.execute(_DEFER, {"id": provider_batch_id, "error": error[:2000], "delay_s": delay_s})


def end(
    conn: Connection, provider_batch_id: uuid.UUID, status: str | None, error: str | None = None
) -> None:
    """-> ended (its calls settled by the caller first)."""
    conn.execute(_END, {"id": provider_batch_id, "status": status, "error": error})


def due(conn: Connection, limit: int = 100) -> list[uuid.UUID]:
    """Provider batches not ended whose next step is due."""
    return [row[0] for row in conn.execute(_DUE, {"limit": limit})]


def row(conn: Connection, provider_batch_id: uuid.UUID) -> RowMapping | None:
    return conn.execute(_ROW, {"id": provider_batch_id}).mappings().first()


def adopted(conn: Connection, provider: str) -> set[str]:
    """The provider's batch ids some row already holds (recent ones)."""
    return {row[0] for row in conn.execute(_ADOPTED, {"provider": provider})}


def try_lock(conn: Connection, provider_batch_id: uuid.UUID) -> bool:
    """The right to step this row, held by `conn`'s session until `unlock`."""
    return bool(conn.execute(_TRY_LOCK, {"id": provider_batch_id}).scalar())


def unlock(conn: Connection, provider_batch_id: uuid.UUID) -> None:
    conn.execute(_UNLOCK, {"id": provider_batch_id})


def try_form_lock(conn: Connection) -> bool:
    return bool(conn.execute(_TRY_FORM_LOCK, {"key": FORM_LOCK_KEY}).scalar())


def form_unlock(conn: Connection) -> None:
    conn.execute(_FORM_UNLOCK, {"key": FORM_LOCK_KEY})


# The calls of a provider batch still in flight: each a job running under the batch's
# lease (or cancelled meanwhile: its call's cost is still added when it settles).
_MEMBERS = text(
    """
    SELECT a.job_id, a.tenant_id, a.attempt_no, a.model, a.reserved_usd, a.budget_held,
           j.request, j.timeout_s, j.max_attempts, j.model_attempts, j.retry_messages,
           coalesce(j.prompt ->> 'name', '') AS prompt_name,
           j.status = 'running' AND j.lease_owner = :owner AS ours
    FROM attempts a JOIN jobs j ON j.id = a.job_id
    WHERE a.provider_batch_id = :id AND a.outcome = 'started'
    ORDER BY a.started_at, a.job_id
    """
)


@dataclass(frozen=True)
class Member:
    """One call in a provider batch: its job, and what a settle needs of it."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    attempt_no: int
    model: str
    reserved_usd: Decimal
    budget_held: bool
    request: dict[str, Any]
    timeout_s: float
    max_attempts: int
    model_attempt_no: int
    retry_messages: list[dict[str, str]]
    prompt_name: str
    running: bool  # False: the job was cancelled (or re-run) since its claim


def members(conn: Connection, provider_batch_id: uuid.UUID) -> list[Member]:
    """The calls of the provider batch not settled yet, in the order they joined it."""
    return [
        Member(
            job_id=r.job_id,
            tenant_id=r.tenant_id,
            attempt_no=r.attempt_no,
            model=r.model,
            reserved_usd=Decimal(r.reserved_usd),
            budget_held=bool(r.budget_held),
            request=r.request,
            timeout_s=float(r.timeout_s),
            max_attempts=r.max_attempts,
            model_attempt_no=r.model_attempts,
            retry_messages=list(r.retry_messages or []),
            prompt_name=str(r.prompt_name),
            running=bool(r.ours),
        )
        for r in conn.execute(
            _MEMBERS, {"id": provider_batch_id, "owner": owner_of(provider_batch_id)}
        )
    ]


# Jobs running under the lease of a provider batch that is gone or ended (a row deleted
# by hand, or an end that could not settle them): their lease lapses now, so the sweeper
# closes the call (charged at its reservation) and queues the job again, standard tier.
_RELEASE_ORPHANS = text(
    f"""
    UPDATE jobs j SET lease_expires_at = now()
    WHERE j.status = 'running' AND j.lease_expires_at = 'infinity'::timestamptz
      AND j.lease_owner LIKE '{OWNER_PREFIX}%'
      AND NOT EXISTS (SELECT 1 FROM provider_batches p
                      WHERE '{OWNER_PREFIX}' || p.id::text = j.lease_owner
                        AND p.state <> 'ended')
    RETURNING j.id
    """
)


def release_orphans(conn: Connection) -> list[uuid.UUID]:
    return [row[0] for row in conn.execute(_RELEASE_ORPHANS)]
