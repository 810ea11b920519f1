"""The job state machine on the worker's side, guarded in SQL.

Every transition is an `UPDATE ... WHERE status = ...` (and, while running, `AND
lease_owner = me`), so a redelivered message or a worker that lost its lease can
never run a finished job again nor record an attempt twice. This is the hot path
of every job: the claim and the settle are one SQL statement each (one round trip,
atomic on its own), run on an autocommit connection.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

# queued (and due) -> running under our lease, counting the call we are about to make,
# reserving its maximum cost against the tenant's budget (check and add in one step,
# so concurrent claims on any number of workers cannot overshoot), and recording the
# call before it is made. A call that does not fit is not recorded: it is not made.
_CLAIM = text(
    """
    WITH claimed AS (
        UPDATE jobs SET status = 'running', attempts = attempts + 1,
               model_attempts = model_attempts + 1, lease_owner = :owner,
               lease_expires_at = now() + make_interval(secs => :lease_s),
               started_at = coalesce(started_at, now()), next_attempt_at = NULL
        WHERE id = :id AND status = 'queued' AND leader_id IS NULL
          AND coalesce(next_attempt_at, now()) <= now()
        RETURNING id, tenant_id, current_model, request, timeout_s, max_attempts, attempts,
                  model_attempts, coalesce((reserve_usd ->> current_model)::numeric, 0) AS reserve
    ), limits AS (
        SELECT t.daily_budget_usd AS daily, t.monthly_budget_usd AS monthly
        FROM tenants t JOIN claimed k ON t.id = k.tenant_id
    ), budget AS (
        UPDATE budget_counters c SET
            day = :today, month = :month,
            day_spent = CASE WHEN c.day = :today THEN c.day_spent ELSE 0 END,
            month_spent = CASE WHEN c.month = :month THEN c.month_spent ELSE 0 END,
            day_reserved = c.day_reserved + k.reserve,
            month_reserved = c.month_reserved + k.reserve
        FROM claimed k, limits l
        WHERE c.tenant_id = k.tenant_id AND k.model_attempts <= k.max_attempts
          AND (l.daily IS NOT NULL OR l.monthly IS NOT NULL)
          AND (l.daily IS NULL OR (CASE WHEN c.day = :today THEN c.day_spent ELSE 0 END)
                                  + c.day_reserved + k.reserve <= l.daily)
          AND (l.monthly IS NULL OR (CASE WHEN c.month = :month THEN c.month_spent ELSE 0 END)
                                    + c.month_reserved + k.reserve <= l.monthly)
        RETURNING c.tenant_id
    ), allowed AS (
        SELECT k.* FROM claimed k, limits l
        WHERE k.model_attempts <= k.max_attempts
          AND ((l.daily IS NULL AND l.monthly IS NULL) OR EXISTS (SELECT 1 FROM budget))
    ), started AS (
        INSERT INTO attempts (job_id, tenant_id, attempt_no, model, worker, outcome,
                              started_at, input_tokens, output_tokens, cost_usd, reserved_usd,
                              budget_held, cost_estimated)
        SELECT id, tenant_id, attempts, current_model, :owner, 'started', now(), 0, 0, 0,
               reserve, EXISTS (SELECT 1 FROM budget), false
        FROM allowed
    )
    SELECT k.tenant_id, k.current_model, k.request, k.timeout_s, k.max_attempts, k.attempts,
           k.model_attempts, EXISTS (SELECT 1 FROM allowed)
    FROM claimed k
    """
)

# Complete the attempt row (only if still started: never count a call twice), then end
# or requeue the job under our lease; if the job left our hands (cancelled), the call
# that was made still adds its cost.
_USAGE = """input_tokens = input_tokens + :input_tokens,
            output_tokens = output_tokens + :output_tokens, cost_usd = cost_usd + :cost_usd"""


def _settle(transition: str, then: str = "") -> TextClause:
    return text(
        f"""
        WITH call AS (
            UPDATE attempts SET outcome = :outcome, finished_at = now(),
                   latency_ms = :latency_ms, input_tokens = :input_tokens,
                   output_tokens = :output_tokens, cost_usd = :cost_usd,
                   error_code = :error_code, error_message = :error_message,
                   http_status = :http_status
            WHERE job_id = :id AND attempt_no = :attempt_no AND outcome = 'started'
            RETURNING job_id, tenant_id, reserved_usd, budget_held
        ), released AS (
            UPDATE budget_counters c SET
                day_reserved = greatest(c.day_reserved - a.reserved_usd, 0),
                month_reserved = greatest(c.month_reserved - a.reserved_usd, 0),
                day_spent = c.day_spent + :cost_usd, month_spent = c.month_spent + :cost_usd
            FROM call a WHERE c.tenant_id = a.tenant_id AND a.budget_held
        ), ended AS (
            UPDATE jobs SET {transition}, lease_owner = NULL, lease_expires_at = NULL, {_USAGE}
            WHERE id IN (SELECT job_id FROM call) AND status = 'running'
              AND lease_owner = :owner
            RETURNING id, tenant_id, fingerprint, current_model, followers
        ), kept_cost AS (
            UPDATE jobs SET {_USAGE}
            WHERE id IN (SELECT job_id FROM call) AND NOT EXISTS (SELECT 1 FROM ended)
        ){then}
        SELECT (SELECT count(*) FROM call), (SELECT count(*) FROM ended),
               coalesce((SELECT followers FROM ended), 0)
        """
    )


# A success of a job with a fingerprint (cache on) is written to the exact cache.
_CACHE_RESULT = """, cached AS (
            INSERT INTO cache_entries (tenant_id, fingerprint, result, model, cost_usd,
                                       input_tokens, output_tokens, created_at, expires_at)
            SELECT tenant_id, fingerprint, :result, current_model, :cost_usd, :input_tokens,
                   :output_tokens, now(), now() + make_interval(secs => :cache_ttl_s)
            FROM ended WHERE fingerprint IS NOT NULL
            ON CONFLICT (tenant_id, fingerprint) DO UPDATE SET
                result = EXCLUDED.result, model = EXCLUDED.model, cost_usd = EXCLUDED.cost_usd,
                input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
                created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
        )"""
_SUCCEED = _settle(
    "status = 'succeeded', finished_at = now(), result = :result", then=_CACHE_RESULT
).bindparams(bindparam("result", type_=JSONB))
_FAIL = _settle(
    """status = 'failed', finished_at = now(), result = :result, error_code = :code,
       error_message = :message, error_retryable = :retryable"""
).bindparams(bindparam("result", type_=JSONB))
# Back to queued with a due time in Postgres: the wait holds no worker slot and no
# delayed broker message, and survives any restart. The sweeper publishes it when due.
_RETRY = _settle(
    """status = 'queued', enqueued_at = now(),
       next_attempt_at = now() + make_interval(secs => :delay_s)"""
)
# The model's attempts ended in a retryable error: the next model gets its own.
_FALLBACK = _settle(
    """status = 'queued', enqueued_at = now(), next_attempt_at = now(),
       current_model = :next_model, model_attempts = 0"""
)
# The claim counted a call that is not made: fail the job without it.
_REFUSED = text(
    """
    UPDATE jobs SET status = 'failed', finished_at = now(), attempts = attempts - 1,
           model_attempts = model_attempts - 1, error_code = :code, error_retryable = false,
           error_message = :message, lease_owner = NULL, lease_expires_at = NULL
    WHERE id = :id AND status = 'running' AND lease_owner = :owner
    RETURNING followers
    """
)
_RENEW = text(
    """
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease_s)
    WHERE lease_owner = :owner AND status = 'running'
    """
)


@dataclass(frozen=True)
class Claimed:
    """A job we hold, with the number of the call we are about to make."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    model: str  # the model this call goes to: the job's, or a fallback
    request: dict[str, Any]
    timeout_s: float
    max_attempts: int
    attempt_no: int  # among all the job's calls
    model_attempt_no: int  # among the calls to this model


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


@dataclass(frozen=True)
class Refused:
    """The job was claimed but no call may be made: it failed (and may have followers)."""

    code: str
    followers: int


def claim(
    conn: Connection,
    job_id: uuid.UUID,
    owner: str,
    lease_s: float,
    *,
    today: date,
    month: date,
) -> Claimed | Refused | None:
    """Take the job, reserve the call's cost and record the attempt, before the call.
    None when the job is not ours to run (taken, finished, not due); Refused when the
    call does not fit the budget, or every attempt was used."""
    params = {"id": job_id, "owner": owner, "lease_s": lease_s, "today": today, "month": month}
    row = conn.execute(_CLAIM, params).first()
    if row is None:
        return None
    tenant_id, model, request, timeout_s, max_attempts, attempt_no, model_attempt_no, allowed = row
    if not allowed:
        if model_attempt_no > max_attempts:
            code = "internal"
            message = f"all {max_attempts} attempts were used (the last was interrupted)"
        else:
            code = "budget_exceeded"
            message = "the call does not fit the tenant's budget; it was not made"
        refused = {"id": job_id, "owner": owner, "code": code, "message": message}
        followers = conn.execute(_REFUSED, refused).scalar()
        return Refused(code=code, followers=int(followers or 0))
    return Claimed(
        id=job_id,
        tenant_id=tenant_id,
        model=model,
        request=request,
        timeout_s=float(timeout_s),
        max_attempts=max_attempts,
        attempt_no=attempt_no,
        model_attempt_no=model_attempt_no,
    )


@dataclass(frozen=True)
class Settled:
    ended: bool  # the job ended (or was requeued) under our lease
    followers: int  # identical jobs that may be waiting on this one


def _run_settle(
    conn: Connection,
    statement: TextClause,
    job: Claimed,
    owner: str,
    call: CallRecord,
    **extra: Any,
) -> Settled:
    params = {
        "id": job.id,
        "owner": owner,
        "attempt_no": job.attempt_no,
        "outcome": call.outcome,
        "latency_ms": call.latency_ms,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cost_usd": call.cost_usd,
        "error_code": call.error_code,
        "error_message": call.error_message,
        "http_status": call.http_status,
        **extra,
    }
    row = conn.execute(statement, params).one()
    return Settled(ended=bool(row[1]), followers=int(row[2]))


def succeed(
    conn: Connection,
    job: Claimed,
    owner: str,
    call: CallRecord,
    result: dict[str, Any],
    *,
    cache_ttl_s: float,
) -> Settled:
    return _run_settle(conn, _SUCCEED, job, owner, call, result=result, cache_ttl_s=cache_ttl_s)


def fail(
    conn: Connection,
    job: Claimed,
    owner: str,
    call: CallRecord,
    *,
    code: str,
    message: str,
    retryable: bool,
    result: dict[str, Any] | None = None,
) -> Settled:
    return _run_settle(
        conn,
        _FAIL,
        job,
        owner,
        call,
        code=code,
        message=message[:2000],
        retryable=retryable,
        result=result,
    )


def schedule_retry(
    conn: Connection, job: Claimed, owner: str, call: CallRecord, delay_s: float
) -> Settled:
    return _run_settle(conn, _RETRY, job, owner, call, delay_s=delay_s)


def fall_back(
    conn: Connection, job: Claimed, owner: str, call: CallRecord, next_model: str
) -> Settled:
    return _run_settle(conn, _FALLBACK, job, owner, call, next_model=next_model)


_CURRENT_MODEL = text(
    "SELECT current_model, timeout_s FROM jobs WHERE id = :id AND status = 'queued'"
)
_DEFER = text(
    """
    UPDATE jobs SET next_attempt_at = now() + make_interval(secs => :delay_s)
    WHERE id = :id AND status = 'queued' AND leader_id IS NULL
    """
)


def next_call(conn: Connection, job_id: uuid.UUID) -> tuple[str, float] | None:
    """The model a queued job will call next, and its timeout."""
    row = conn.execute(_CURRENT_MODEL, {"id": job_id}).first()
    return (str(row[0]), float(row[1])) if row is not None else None


def defer(conn: Connection, job_id: uuid.UUID, delay_s: float) -> None:
    """Leave a queued job for later (its model is at its cap); the sweeper publishes it."""
    conn.execute(_DEFER, {"id": job_id, "delay_s": delay_s})


def renew_leases(conn: Connection, owner: str, lease_s: float) -> None:
    conn.execute(_RENEW, {"owner": owner, "lease_s": lease_s})
