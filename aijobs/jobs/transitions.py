"""The job state machine: every transition of a job is a named function here, over
SQL guarded by the state it leaves, so each is safe to run twice.

    submit      (none)             -> queued, or succeeded at once (a cache hit), or a
                                      follower of an identical job in flight
    claim       queued, due        -> running under a lease (the call recorded, its
                                      cost reserved), or failed (refused: it cannot fit
                                      the budget even alone); a job queued for the batch
                                      tier is claimed into a provider batch instead, at
                                      its batch price, under that batch's lease
    wait        running (ours)     -> queued, waiting for budget (the call fits alone,
                                      not beside the reservations in flight)
    wake        waiting for budget -> queued and due (a settle freed room)
    succeed     running (ours)     -> succeeded (and cached)
    retry       running (ours)     -> queued, due after a backoff
    fall back   running (ours)     -> queued, on the next model
    judge       running (ours)     -> running (ours), its call recorded and a judge
                                      check's call reserved as the next attempt (or
                                      failed budget_exceeded when it cannot fit alone)
    judge wait  running (ours)     -> queued with the judge pending, waiting for budget
                                      (the judge fits alone, not beside the calls in
                                      flight); its next claim is that judge's call
    fail        running (ours)     -> failed
    cancel      queued | running   -> cancelled
    lapse       running, lease out -> queued (its lost call charged at its reservation),
                                      on the next model if that call was its model's last
    re-run      terminal           -> queued, or succeeded (cache), or a follower
    followers   queued follower    -> its leader's outcome, or leader itself (heir)
    purge       ended, expired     -> ended and purged (request and result removed)

"Ours" is `status = 'running' AND lease_owner = :owner`: a redelivered message or a
worker that lost its lease can never end a job again nor record an attempt twice.
The claim and the settle are the hot path of every job: one statement each (one round
trip, atomic on its own), run on an autocommit connection. A job's end also makes its
webhook delivery: the trigger of migration 0006 does that for every path here. The
states and guards are drawn in docs/state-machine.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from aijobs.billing.budget import (
    MONTH,
    SPENT_SQL,
    STATE_SELECT,
    TODAY,
    periods_of,
    refuse_spent,
)
from aijobs.db import DriverStatement, row_on_driver, run_on_driver
from aijobs.jobs.view import VIEW_COLUMNS
from aijobs.lost_work import Waiting

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

# --- submit -------------------------------------------------------------------------

_COLUMNS = """id, tenant_id, status, model, current_model, model_attempts, task, request,
    metadata, webhook_url, max_attempts, timeout_s, attempts, input_tokens, output_tokens,
    cost_usd, cache_hit, saved_usd, fingerprint, leader_id, followers, result, started_at,
    finished_at, created_at, enqueued_at, reserve_usd, prompt, checks, priority"""

# What a submit returns: the job to show, and what the API counts it by.
_RETURNED = (*VIEW_COLUMNS, "leader_id", "saved_usd")
_RETURNING = ", ".join(_RETURNED)

# One round trip: look the cache up and insert the job, finished if it was a hit. An
# identical request already in flight makes the insert do nothing (the unique index
# on in-flight leaders): the caller then follows that leader.
_HIT = """
    hit AS (
        SELECT result, model, cost_usd, checks FROM cache_entries
        WHERE tenant_id = :tenant_id AND fingerprint = :fingerprint AND expires_at > now()
    )"""
_INSERT_JOB = f"""
    INSERT INTO jobs ({_COLUMNS})
    SELECT :id, :tenant_id, CASE WHEN hit.result IS NULL THEN 'queued' ELSE 'succeeded' END,
           :model, coalesce(hit.model, :model), 0, :task, :request, :metadata, :webhook_url,
           :max_attempts, :timeout_s, 0, 0, 0, 0, hit.result IS NOT NULL,
           coalesce(hit.cost_usd, 0), :fingerprint, NULL, 0, hit.result,
           CASE WHEN hit.result IS NULL THEN NULL ELSE now() END,
           CASE WHEN hit.result IS NULL THEN NULL ELSE now() END, now(), now(), :reserve_usd,
           :prompt, hit.checks, :priority
    FROM {{source}}
    ON CONFLICT (tenant_id, fingerprint)
        WHERE leader_id IS NULL AND status IN ('queued', 'running') DO NOTHING
    RETURNING {_RETURNING}"""
_INSERT_PARAMS = (
    bindparam("request", type_=JSONB),
    bindparam("metadata", type_=JSONB),
    bindparam("reserve_usd", type_=JSONB),
    bindparam("prompt", type_=JSONB(none_as_null=True)),
)
_INSERT = text(
    f"WITH {_HIT}" + _INSERT_JOB.format(source="(SELECT 1) AS one LEFT JOIN hit ON true")
).bindparams(*_INSERT_PARAMS)
# The same for a tenant with a budget, its submit check folded in (still one round
# trip): the tenant's budget state is read beside the cache, and the job is inserted
# only when no limit is spent. Always one row: the budget state, and the job's columns
# (all NULL when a limit is spent, or when an identical job is in flight).
_INSERT_BUDGETED = text(
    f"""
    WITH budget AS (
        SELECT *, {SPENT_SQL} AS budget_spent FROM ({STATE_SELECT}) AS state
    ), {_HIT}, job AS ({
        _INSERT_JOB.format(source="budget LEFT JOIN hit ON true WHERE NOT budget.budget_spent")
    })
    SELECT budget.*, job.* FROM budget LEFT JOIN job ON true
    """
).bindparams(*_INSERT_PARAMS)

# Count one more follower on the live leader of the same request (not the job itself):
# the row lock makes the leader's settle wait for our commit, so it cannot miss us.
JOIN_LIVE_LEADER = text(
    """
    UPDATE jobs SET followers = followers + 1
    WHERE tenant_id = :tenant_id AND fingerprint = :fingerprint AND leader_id IS NULL
      AND status IN ('queued', 'running') AND id <> :id
    RETURNING id
    """
)
_INSERT_FOLLOWER = text(
    f"""
    INSERT INTO jobs ({_COLUMNS})
    VALUES (:id, :tenant_id, 'queued', :model, :model, 0, :task, :request, :metadata,
            :webhook_url, :max_attempts, :timeout_s, 0, 0, 0, 0, false, 0, :fingerprint,
            :leader_id, 0, NULL, NULL, NULL, now(), now(), :reserve_usd, :prompt, NULL, :priority)
    RETURNING {_RETURNING}
    """
).bindparams(
    bindparam("request", type_=JSONB),
    bindparam("metadata", type_=JSONB),
    bindparam("reserve_usd", type_=JSONB),
    bindparam("prompt", type_=JSONB(none_as_null=True)),
)
_SUBMITTED = text(f"SELECT {_RETURNING} FROM jobs WHERE id = :id")


_INSERT_ON_DRIVER = DriverStatement(_INSERT)
_INSERT_BUDGETED_ON_DRIVER = DriverStatement(_INSERT_BUDGETED)


def insert(conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """(none) -> queued, or succeeded from the cache. None when an identical job is in
    flight: follow it (`follow`). The hottest statement: run on the driver."""
    return run_on_driver(conn, _INSERT_ON_DRIVER, params)


def insert_budgeted(conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """`insert` for a tenant with a budget, refused (BudgetExceeded, nothing written)
    when a limit is already spent, in the same statement."""
    row = run_on_driver(conn, _INSERT_BUDGETED_ON_DRIVER, params)
    assert row is not None  # the budget's state: always one row
    if row["budget_spent"]:
        refuse_spent(*periods_of(row))
        raise AssertionError("budget_spent without a spent period")  # SPENT_SQL agrees
    if row["id"] is None:
        return None
    return {name: row[name] for name in _RETURNED}


def follow(conn: Connection, params: Mapping[str, Any]) -> RowMapping | None:
    """(none) -> queued as a follower of the identical job in flight; None when that
    job ended meanwhile (insert again). In a transaction: the leader stays locked."""
    leader = conn.execute(JOIN_LIVE_LEADER, params).scalar()
    if leader is None:
        return None
    return conn.execute(_INSERT_FOLLOWER, {**params, "leader_id": leader}).mappings().one()


def submitted(conn: Connection, job_id: uuid.UUID) -> RowMapping:
    """A job as a submit returns it (the replay of an Idempotency-Key)."""
    return conn.execute(_SUBMITTED, {"id": job_id}).mappings().one()


# --- claim and settle (the worker) --------------------------------------------------


# The most a job's next call may cost: its model's call (and what a check retry adds to
# it), or, with a judge pending, that judge's call (computed when the judge waited). A
# call in a provider batch is reserved at the batch price (`batch:<model>`).
def _reserve(batch: bool) -> str:
    model_call = (
        "coalesce((reserve_usd ->> ('batch:' || current_model))::numeric,"
        " (reserve_usd ->> current_model)::numeric, 0)"
        if batch
        else "coalesce((reserve_usd ->> current_model)::numeric, 0)"
    )
    return f"""CASE WHEN judge_pending IS NULL
               THEN {model_call} + retry_reserve_usd
               ELSE (judge_pending ->> 'reserve')::numeric END"""


RESERVE = _reserve(batch=False)
# What a queued job's next call reserves, on whichever tier it is queued for.
QUEUED_RESERVE = f"""CASE WHEN tier = 'batch' THEN {_reserve(batch=True)}
                    ELSE {RESERVE} END"""


# queued (and due) -> running under our lease, counting the call we are about to make,
# reserving its maximum cost against the tenant's budget (check and add in one step,
# so concurrent claims on any number of workers cannot overshoot), and recording the
# call before it is made. A call that does not fit is not recorded: it is not made.
# The budget periods come from the database's clock. When the call does not fit, the
# statement also says whether it would fit with nothing else reserved (`fits_alone`):
# then it waits for the reservations to settle (wait_for_budget), else it is refused.
# A tenant without a budget never reads its counters here.
def _claim_statement(tier: str) -> TextClause:
    """The claim of a job queued for `tier`: standard (one call, under a lease the
    worker renews), or batch (the call goes in provider batch :provider_batch_id, at its
    batch reservation, under a lease that does not lapse while that batch is in flight:
    worker/provider_batches/; any later call of the job is standard).

    `num_nulls(leader_id) = 1` says `leader_id IS NULL` in a form the planner cannot
    match to the partial index of in-flight leaders (uq_jobs_inflight_leader): with the
    plain form, on a table whose statistics lag its growth (a fresh database, a big
    batch just queued), it scanned that whole index for the id, the queue's length
    per claim, instead of taking the row by its primary key."""
    batch = tier == "batch"
    lease = "'infinity'::timestamptz" if batch else "now() + make_interval(secs => :lease_s)"
    reserve = _reserve(batch)
    in_batch = "CAST(:provider_batch_id AS uuid)" if batch else "NULL"
    return text(
        f"""
    WITH claimed AS (
        UPDATE jobs SET status = 'running', attempts = attempts + 1,
               model_attempts = model_attempts + CASE WHEN judge_pending IS NULL THEN 1
                                                      ELSE 0 END,
               lease_owner = :owner, lease_expires_at = {lease}, tier = 'standard',
               started_at = coalesce(started_at, now()), next_attempt_at = NULL
        WHERE id = :id AND status = 'queued' AND num_nulls(leader_id) = 1
          AND tier = '{tier}' AND coalesce(next_attempt_at, now()) <= now()
        RETURNING id, tenant_id, current_model, request, timeout_s, max_attempts, attempts,
                  model_attempts, {reserve} AS reserve,
                  started_at = now() AS first_start, retry_messages,
                  coalesce(prompt ->> 'name', '') AS prompt_name, judge_pending
    ), limits AS (
        SELECT t.daily_budget_usd AS daily, t.monthly_budget_usd AS monthly
        FROM tenants t JOIN claimed k ON t.id = k.tenant_id
    ), budget AS (
        UPDATE budget_counters c SET
            day = {TODAY}, month = {MONTH},
            day_spent = CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END,
            month_spent = CASE WHEN c.month = {MONTH} THEN c.month_spent ELSE 0 END,
            day_reserved = c.day_reserved + k.reserve,
            month_reserved = c.month_reserved + k.reserve
        FROM claimed k, limits l
        WHERE c.tenant_id = k.tenant_id AND k.model_attempts <= k.max_attempts
          AND (l.daily IS NOT NULL OR l.monthly IS NOT NULL)
          AND (l.daily IS NULL OR (CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END)
                                  + c.day_reserved + k.reserve <= l.daily)
          AND (l.monthly IS NULL OR (CASE WHEN c.month = {MONTH} THEN c.month_spent ELSE 0 END)
                                    + c.month_reserved + k.reserve <= l.monthly)
        RETURNING c.tenant_id
    ), allowed AS (
        SELECT k.* FROM claimed k, limits l
        WHERE k.model_attempts <= k.max_attempts
          AND ((l.daily IS NULL AND l.monthly IS NULL) OR EXISTS (SELECT 1 FROM budget))
    ), started AS (
        INSERT INTO attempts (job_id, tenant_id, attempt_no, model, worker, outcome,
                              started_at, input_tokens, output_tokens, cost_usd, reserved_usd,
                              budget_held, cost_estimated, kind, provider_batch_id)
        SELECT id, tenant_id, attempts, coalesce(judge_pending ->> 'model', current_model),
               :owner, 'started', now(), 0, 0, 0, reserve, EXISTS (SELECT 1 FROM budget),
               false, CASE WHEN judge_pending IS NULL THEN 'call' ELSE 'judge' END, {in_batch}
        FROM allowed
    ), alone AS (
        SELECT (l.daily IS NULL OR (CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END)
                                   + k.reserve <= l.daily)
               AND (l.monthly IS NULL OR (CASE WHEN c.month = {MONTH} THEN c.month_spent
                                          ELSE 0 END) + k.reserve <= l.monthly) AS fits
        FROM budget_counters c, claimed k, limits l WHERE c.tenant_id = k.tenant_id
    )
    SELECT k.tenant_id, k.current_model, k.request, k.timeout_s, k.max_attempts, k.attempts,
           k.model_attempts, k.reserve, EXISTS (SELECT 1 FROM allowed),
           EXISTS (SELECT 1 FROM budget),
           CASE WHEN EXISTS (SELECT 1 FROM allowed) THEN true
                ELSE coalesce((SELECT fits FROM alone), false) END,
           k.first_start, k.retry_messages, k.prompt_name, k.judge_pending
    FROM claimed k
    """
    )


_CLAIM = _claim_statement("standard")
_CLAIM_FOR_PROVIDER_BATCH = _claim_statement("batch")
# The worker's two statements a job, run on the driver like the submit's (db.py).
_CLAIM_ON_DRIVER = DriverStatement(_CLAIM)
_CLAIM_FOR_PROVIDER_BATCH_ON_DRIVER = DriverStatement(_CLAIM_FOR_PROVIDER_BATCH)

# A call that fits the budget alone but not beside the reservations of calls in flight:
# running (ours, just claimed) -> queued, its attempt uncounted, waiting for budget
# (next_attempt_at = BUDGET_WAIT: not due, so no claim, retry or lost-message sweep
# takes it) until a settle of the tenant's calls wakes it (wake_budget_waiters). The
# tenant's counters row is locked and read again first: a settle that released a
# reservation since the claim is seen (the job is then due at once), and one that
# comes after this commits wakes the job; no wake is lost between the two.
BUDGET_WAIT = "'9999-12-31 00:00:00+00'::timestamptz"
_FITS_NOW = f"""(t.daily_budget_usd IS NULL
                 OR (CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END) + c.day_reserved
                    + :reserve <= t.daily_budget_usd)
             AND (t.monthly_budget_usd IS NULL
                 OR (CASE WHEN c.month = {MONTH} THEN c.month_spent ELSE 0 END)
                    + c.month_reserved + :reserve <= t.monthly_budget_usd)"""
_WAIT_FOR_BUDGET = text(
    f"""
    WITH room AS (
        SELECT {_FITS_NOW} AS fits
        FROM budget_counters c JOIN tenants t ON t.id = c.tenant_id
        WHERE c.tenant_id = :tenant_id
        FOR UPDATE OF c
    )
    UPDATE jobs j SET status = 'queued', attempts = j.attempts - 1, tier = :tier,
           model_attempts = j.model_attempts - CASE WHEN j.judge_pending IS NULL THEN 1
                                                    ELSE 0 END,
           lease_owner = NULL, lease_expires_at = NULL,
           enqueued_at = now(), started_at = CASE WHEN :first_start THEN NULL ELSE j.started_at END,
           next_attempt_at = CASE WHEN coalesce(r.fits, true) THEN NULL ELSE {BUDGET_WAIT} END
    FROM (SELECT 1) AS one LEFT JOIN room r ON true
    WHERE j.id = :id AND j.status = 'running' AND j.lease_owner = :owner
      AND j.attempts = :attempt_no
    RETURNING NOT coalesce(r.fits, true)
    """
)
# Waiting jobs to make due (and publish), oldest first per tenant: those that fit beside
# the calls in flight and the waiting jobs before them, and those that can never fit
# (their claim fails them budget_exceeded). After each settle of a held reservation
# (for its tenant) and on every sweep (all tenants: released lost calls, raised or
# cleared budgets, a new day).
_WAKE_BUDGET_WAITERS = text(
    f"""
    WITH waiting AS (
        SELECT j.id, j.tenant_id, j.created_at, {QUEUED_RESERVE} AS reserve
        FROM jobs j
        WHERE j.status = 'queued' AND j.next_attempt_at = {BUDGET_WAIT}
          AND (CAST(:tenant_id AS uuid) IS NULL OR j.tenant_id = CAST(:tenant_id AS uuid))
    ), room AS (
        SELECT c.tenant_id, c.day_reserved, c.month_reserved,
               t.daily_budget_usd - CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END
                   AS day_left,
               t.monthly_budget_usd - CASE WHEN c.month = {MONTH} THEN c.month_spent ELSE 0 END
                   AS month_left
        FROM budget_counters c JOIN tenants t ON t.id = c.tenant_id
        WHERE c.tenant_id IN (SELECT tenant_id FROM waiting)
    ), judged AS (
        SELECT w.id, w.tenant_id, w.created_at, w.reserve, r.day_reserved, r.month_reserved,
               r.day_left, r.month_left,
               (r.day_left IS NULL OR w.reserve <= r.day_left)
               AND (r.month_left IS NULL OR w.reserve <= r.month_left) AS fits_alone
        FROM waiting w JOIN room r ON r.tenant_id = w.tenant_id
    ), queue AS (
        SELECT *, sum(CASE WHEN fits_alone THEN reserve ELSE 0 END)
                      OVER (PARTITION BY tenant_id ORDER BY created_at, id) AS through
        FROM judged
    )
    UPDATE jobs SET next_attempt_at = NULL, enqueued_at = now()
    WHERE id IN (
        SELECT id FROM queue
        WHERE NOT fits_alone
           OR ((day_left IS NULL OR day_reserved + through <= day_left)
               AND (month_left IS NULL OR month_reserved + through <= month_left))
        ORDER BY created_at LIMIT :batch)
      AND status = 'queued' AND next_attempt_at = {BUDGET_WAIT}
    RETURNING id
    """
)

# Complete the attempt row (only if still started: never count a call twice), then end
# or requeue the job under our lease and only for this attempt (the fencing token: a
# late answer of an older attempt never ends a newer run of the job, after a re-run or
# a lapse and a new claim, even by this same process); if the job left our hands
# (cancelled, re-run), the call that was made still adds its cost.
_USAGE = """input_tokens = input_tokens + :input_tokens,
            output_tokens = output_tokens + :output_tokens, cost_usd = cost_usd + :cost_usd"""


# Complete the attempt row (only if still started: never count a call twice) with its
# cost and checks, and release its budget hold, adding what it cost: the first two steps
# of every settle, and of recording a call that a judge is to score.
_RECORD_CALL_CTES = """call AS (
            UPDATE attempts SET outcome = :outcome, finished_at = now(),
                   latency_ms = :latency_ms, input_tokens = :input_tokens,
                   output_tokens = :output_tokens, cost_usd = :cost_usd,
                   cached_input_tokens = :cached_input_tokens,
                   cache_write_tokens = :cache_write_tokens,
                   error_code = :error_code, error_message = :error_message,
                   http_status = :http_status, checks = :checks
            WHERE job_id = :id AND attempt_no = :attempt_no AND outcome = 'started'
            RETURNING job_id, tenant_id, reserved_usd, budget_held
        ), released AS (
            UPDATE budget_counters c SET
                day_reserved = greatest(c.day_reserved - a.reserved_usd, 0),
                month_reserved = greatest(c.month_reserved - a.reserved_usd, 0),
                day_spent = c.day_spent + :cost_usd, month_spent = c.month_spent + :cost_usd
            FROM call a WHERE c.tenant_id = a.tenant_id AND a.budget_held
        )"""


def _settle(transition: str, then: str = "") -> TextClause:
    return text(
        f"""
        WITH {_RECORD_CALL_CTES}, ended AS (
            UPDATE jobs SET {transition}, lease_owner = NULL, lease_expires_at = NULL, {_USAGE},
                   checks = coalesce(:job_checks, checks), judge_pending = NULL
            WHERE id IN (SELECT job_id FROM call) AND status = 'running'
              AND lease_owner = :owner AND attempts = :attempt_no
            RETURNING id, tenant_id, fingerprint, current_model, followers, checks
        ), kept_cost AS (
            UPDATE jobs SET {_USAGE}
            WHERE id IN (SELECT job_id FROM call) AND NOT EXISTS (SELECT 1 FROM ended)
        ){then}
        SELECT (SELECT count(*) FROM call), (SELECT count(*) FROM ended),
               coalesce((SELECT followers FROM ended), 0)
        """
    ).bindparams(
        bindparam("checks", type_=JSONB(none_as_null=True)),
        bindparam("job_checks", type_=JSONB(none_as_null=True)),
    )


# What a check retry added to the next call goes once the job leaves the model (or ends).
_NO_RETRY_MESSAGES = "retry_messages = NULL, retry_reserve_usd = 0"


# A success of a job with a fingerprint (cache on) is written to the exact cache, with the
# checks its output passed (shown on the jobs the entry answers).
_CACHE_RESULT = """, cached AS (
            INSERT INTO cache_entries (tenant_id, fingerprint, result, model, cost_usd,
                                       input_tokens, output_tokens, checks, created_at,
                                       expires_at)
            SELECT tenant_id, fingerprint, :result, current_model, :cache_cost_usd, :input_tokens,
                   :output_tokens, checks, now(), now() + make_interval(secs => :cache_ttl_s)
            FROM ended WHERE fingerprint IS NOT NULL
            ON CONFLICT (tenant_id, fingerprint) DO UPDATE SET
                result = EXCLUDED.result, model = EXCLUDED.model, cost_usd = EXCLUDED.cost_usd,
                input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
                checks = EXCLUDED.checks, created_at = EXCLUDED.created_at,
                expires_at = EXCLUDED.expires_at
        )"""
_SUCCEED = _settle(
    f"status = 'succeeded', finished_at = now(), result = :result, {_NO_RETRY_MESSAGES}",
    then=_CACHE_RESULT,
).bindparams(bindparam("result", type_=JSONB))
_FAIL = _settle(
    f"""status = 'failed', finished_at = now(), result = :result, error_code = :code,
       error_message = :message, error_retryable = :retryable, {_NO_RETRY_MESSAGES}"""
).bindparams(bindparam("result", type_=JSONB))
# Back to queued with a due time in Postgres: the wait holds no worker slot and no
# delayed broker message, and survives any restart. The sweeper publishes it when due.
# A check retry sets the messages its next call adds (and their reservation); a retry
# after a provider error keeps those of an earlier check retry.
_RETRY = _settle(
    """status = 'queued', enqueued_at = now(),
       next_attempt_at = now() + make_interval(secs => :delay_s),
       retry_reserve_usd = CASE WHEN CAST(:retry_messages AS jsonb) IS NULL
                                THEN retry_reserve_usd ELSE :retry_reserve_usd END,
       retry_messages = coalesce(CAST(:retry_messages AS jsonb), retry_messages)"""
).bindparams(bindparam("retry_messages", type_=JSONB(none_as_null=True)))
# The model's attempts ended in a retryable error: the next model gets its own.
_FALLBACK = _settle(
    f"""status = 'queued', enqueued_at = now(), next_attempt_at = now(),
       current_model = :next_model, model_attempts = 0, {_NO_RETRY_MESSAGES}"""
)
# The claim counted a call that is not made: fail the job without it.
_REFUSED = text(
    """
    UPDATE jobs SET status = 'failed', finished_at = now(), attempts = attempts - 1,
           model_attempts = model_attempts - CASE WHEN judge_pending IS NULL THEN 1 ELSE 0 END,
           error_code = :code, error_retryable = false, error_message = :message,
           lease_owner = NULL, lease_expires_at = NULL,
           result = coalesce(judge_pending -> 'result', result), judge_pending = NULL
    WHERE id = :id AND status = 'running' AND lease_owner = :owner AND attempts = :attempt_no
    RETURNING followers
    """
)
# Only the attempts this process is working on (by id): a job whose attempt died in
# the process is not renewed, so its lease lapses and the sweeper takes it over.
_RENEW = text(
    """
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease_s)
    WHERE id = ANY(:ids) AND lease_owner = :owner AND status = 'running'
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
    attempt_no: int  # among all the job's calls: the fencing token of its settle
    model_attempt_no: int  # among the calls to this model
    reserved_usd: Decimal  # the most this call may cost (held against the budget)
    budget_held: bool = False  # reserved against the tenant's budget: its settle frees room
    # A check retry: the failed output and what failed, sent after the request's messages
    # (their cost is in reserved_usd).
    retry_messages: list[dict[str, str]] = field(default_factory=list)
    prompt_name: str = ""  # the prompt the job was rendered from, or ""
    tier: str = "standard"  # batch: a call in a provider batch, priced at the batch price
    # A judge that waited for budget: this claim is its call (kind judge, reserved as
    # pending["reserve"]), about the output kept in pending (worker/judging.py).
    judge_pending: dict[str, Any] | None = None


@dataclass(frozen=True)
class CallRecord:
    """What one provider call cost and how it ended."""

    outcome: str  # succeeded | failed
    latency_ms: int
    checks: list[dict[str, Any]] | None = None  # the output checks run on its answer
    # The checks of the job's output, when not the call's own (a judge's call: its own
    # result, and the job's are all of them).
    job_checks: list[dict[str, Any]] | None = None
    # What the output cost in all (a judge's call: the output's call and its judges').
    output_cost_usd: Decimal | None = None
    input_tokens: int = 0  # all of them, the cached and cache-write ones among them
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    cached_input_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it
    error_code: str | None = None
    error_message: str | None = None
    http_status: int | None = None


@dataclass(frozen=True)
class Refused:
    """The job was claimed but no call may be made: it failed (and may have followers)."""

    code: str
    followers: int


@dataclass(frozen=True)
class OverReserved:
    """The call fits the budget alone but not beside the reservations in flight: the job
    is ours (running) until wait_for_budget hands it back to the queue."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    attempt_no: int
    reserved_usd: Decimal
    first_start: bool  # the claim set started_at: no call has started, so it is cleared


def claim(
    conn: Connection, job_id: uuid.UUID, owner: str, lease_s: float
) -> Claimed | Refused | OverReserved | None:
    """Take the job, reserve the call's cost and record the attempt, before the call.
    None when the job is not ours to run (taken, finished, not due, waiting for budget,
    queued for a provider batch);
    Refused when the call cannot fit the budget even alone, or every attempt was used;
    OverReserved when it only waits for other calls' reservations (wait_for_budget)."""
    params = {"id": job_id, "owner": owner, "lease_s": lease_s}
    return _claimed(conn, _CLAIM_ON_DRIVER, job_id, owner, params, "standard")


def claim_for_provider_batch(
    conn: Connection, job_id: uuid.UUID, owner: str, provider_batch_id: uuid.UUID
) -> Claimed | Refused | OverReserved | None:
    """queued for the batch tier -> running in a provider batch: as `claim`, at the
    call's batch reservation, its attempt naming the provider batch, its lease held
    until that batch ends (the sweeper does not take it back meanwhile)."""
    params = {"id": job_id, "owner": owner, "provider_batch_id": provider_batch_id}
    return _claimed(conn, _CLAIM_FOR_PROVIDER_BATCH_ON_DRIVER, job_id, owner, params, "batch")


def _claimed(
    conn: Connection,
    statement: DriverStatement,
    job_id: uuid.UUID,
    owner: str,
    params: Mapping[str, Any],
    tier: str,
) -> Claimed | Refused | OverReserved | None:
    row = row_on_driver(conn, statement, params)
    if row is None:
        return None
    (
        tenant_id,
        model,
        request,
        timeout_s,
        max_attempts,
        attempt_no,
        model_attempt_no,
        reserved,
        allowed,
        held,
        fits_alone,
        first_start,
        retry_messages,
        prompt_name,
        judge_pending,
    ) = row
    if not allowed and model_attempt_no <= max_attempts and fits_alone:
        return OverReserved(job_id, tenant_id, attempt_no, Decimal(reserved), bool(first_start))
    if not allowed:
        if model_attempt_no > max_attempts:
            code = "internal"
            message = f"all {max_attempts} attempts were used (the last was interrupted)"
        else:
            code = "budget_exceeded"
            what = "judge call" if judge_pending is not None else "call"
            message = f"the {what} cannot fit the tenant's budget; it was not made"
        refused = {
            "id": job_id,
            "owner": owner,
            "attempt_no": attempt_no,
            "code": code,
            "message": message,
        }
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
        reserved_usd=Decimal(reserved),
        budget_held=bool(held),
        retry_messages=list(retry_messages or []),
        prompt_name=str(prompt_name),
        tier=tier,
        judge_pending=judge_pending,
    )


def wait_for_budget(
    conn: Connection, job: OverReserved, owner: str, tier: str = "standard"
) -> bool | None:
    """running (ours, over-reserved) -> queued, waiting for budget, its attempt uncounted
    (for its call on `tier` again). False when the room is there by now: the job is
    queued and due (claim it again); None when the job left our hands meanwhile."""
    params = {
        "tier": tier,
        "id": job.id,
        "owner": owner,
        "attempt_no": job.attempt_no,
        "tenant_id": job.tenant_id,
        "reserve": job.reserved_usd,
        "first_start": job.first_start,
    }
    row = conn.execute(_WAIT_FOR_BUDGET, params).first()
    return None if row is None else bool(row[0])


def wake_budget_waiters(
    conn: Connection, tenant_id: uuid.UUID | None = None, batch: int = 1000
) -> list[uuid.UUID]:
    """queued, waiting for budget -> queued and due, for the waiting jobs that may run
    now (of one tenant, or of all): to publish."""
    params = {"tenant_id": tenant_id, "batch": batch}
    return [row[0] for row in conn.execute(_WAKE_BUDGET_WAITERS, params)]


@dataclass(frozen=True)
class Settled:
    ended: bool  # the job ended (or was requeued) under our lease
    followers: int  # identical jobs that may be waiting on this one


def _call_params(job: Claimed, call: CallRecord) -> dict[str, Any]:
    """The parameters of _RECORD_CALL_CTES: which attempt, and what its call gave."""
    return {
        "id": job.id,
        "attempt_no": job.attempt_no,
        "outcome": call.outcome,
        "latency_ms": call.latency_ms,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cost_usd": call.cost_usd,
        "cached_input_tokens": call.cached_input_tokens,
        "cache_write_tokens": call.cache_write_tokens,
        "error_code": call.error_code,
        "error_message": call.error_message,
        "http_status": call.http_status,
        "checks": call.checks,
    }


def _run_settle(
    conn: Connection,
    statement: TextClause,
    job: Claimed,
    owner: str,
    call: CallRecord,
    **extra: Any,
) -> Settled:
    params = {
        **_call_params(job, call),
        "owner": owner,
        "job_checks": call.job_checks if call.job_checks is not None else call.checks,
        **extra,
    }
    row = row_on_driver(conn, _SETTLES_ON_DRIVER[statement], params)
    assert row is not None  # the statement's counts: always one row
    return Settled(ended=bool(row[1]), followers=int(row[2]))


def succeed(
    conn: Connection,
    job: Claimed,
    owner: str,
    call: CallRecord,
    result: dict[str, Any],
    *,
    cache_ttl_s: float,
    cache_cost_usd: Decimal | None = None,
) -> Settled:
    """running (ours) -> succeeded, cached at what a hit saves: the call's cost, or
    `cache_cost_usd` (a judged output's: its call's and its judges')."""
    return _run_settle(
        conn,
        _SUCCEED,
        job,
        owner,
        call,
        result=result,
        cache_ttl_s=cache_ttl_s,
        cache_cost_usd=call.cost_usd if cache_cost_usd is None else cache_cost_usd,
    )


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
    conn: Connection,
    job: Claimed,
    owner: str,
    call: CallRecord,
    delay_s: float,
    *,
    retry_messages: list[dict[str, str]] | None = None,
    retry_reserve_usd: Decimal = Decimal(0),
) -> Settled:
    """running (ours) -> queued, due after delay_s; a check retry gives the messages
    its next call adds and the most they cost as input."""
    return _run_settle(
        conn,
        _RETRY,
        job,
        owner,
        call,
        delay_s=delay_s,
        retry_messages=retry_messages,
        retry_reserve_usd=retry_reserve_usd,
    )


def fall_back(
    conn: Connection, job: Claimed, owner: str, call: CallRecord, next_model: str
) -> Settled:
    return _run_settle(conn, _FALLBACK, job, owner, call, next_model=next_model)


# --- judge checks: a second call within the same run --------------------------------

# The call whose output a judge scores is recorded (cost, checks so far, its budget hold
# released) without moving the job: it stays running under our lease for the judge.
_RECORD_CALL = text(
    f"""
    WITH {_RECORD_CALL_CTES}, used AS (
        UPDATE jobs SET {_USAGE}, checks = coalesce(:checks, checks)
        WHERE id IN (SELECT job_id FROM call)
    )
    SELECT count(*) FROM call
    """
).bindparams(bindparam("checks", type_=JSONB(none_as_null=True)))
# running (ours, this attempt) -> running (ours, the next attempt number: the judge's),
# its call reserved against the tenant's budget and recorded (kind judge) before it is
# made, in one statement as a claim does. Nothing changes when it does not fit.
_CLAIM_JUDGE = text(
    f"""
    WITH job AS (
        SELECT id, tenant_id FROM jobs
        WHERE id = :id AND status = 'running' AND lease_owner = :owner
          AND attempts = :attempt_no
        FOR UPDATE
    ), limits AS (
        SELECT t.daily_budget_usd AS daily, t.monthly_budget_usd AS monthly
        FROM tenants t JOIN job k ON t.id = k.tenant_id
    ), budget AS (
        UPDATE budget_counters c SET
            day = {TODAY}, month = {MONTH},
            day_spent = CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END,
            month_spent = CASE WHEN c.month = {MONTH} THEN c.month_spent ELSE 0 END,
            day_reserved = c.day_reserved + :reserve,
            month_reserved = c.month_reserved + :reserve
        FROM job k, limits l
        WHERE c.tenant_id = k.tenant_id
          AND (l.daily IS NOT NULL OR l.monthly IS NOT NULL)
          AND (l.daily IS NULL OR (CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END)
                                  + c.day_reserved + :reserve <= l.daily)
          AND (l.monthly IS NULL OR (CASE WHEN c.month = {MONTH} THEN c.month_spent ELSE 0 END)
                                    + c.month_reserved + :reserve <= l.monthly)
        RETURNING c.tenant_id
    ), allowed AS (
        SELECT k.* FROM job k, limits l
        WHERE (l.daily IS NULL AND l.monthly IS NULL) OR EXISTS (SELECT 1 FROM budget)
    ), bumped AS (
        UPDATE jobs SET attempts = attempts + 1 WHERE id IN (SELECT id FROM allowed)
    ), started AS (
        INSERT INTO attempts (job_id, tenant_id, attempt_no, model, worker, outcome,
                              started_at, input_tokens, output_tokens, cost_usd, reserved_usd,
                              budget_held, cost_estimated, kind)
        SELECT id, tenant_id, :attempt_no + 1, :model, :owner, 'started', now(), 0, 0, 0,
               :reserve, EXISTS (SELECT 1 FROM budget), false, 'judge'
        FROM allowed
    ), alone AS (
        SELECT (l.daily IS NULL OR (CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END)
                                   + :reserve <= l.daily)
               AND (l.monthly IS NULL OR (CASE WHEN c.month = {MONTH} THEN c.month_spent
                                          ELSE 0 END) + :reserve <= l.monthly) AS fits
        FROM budget_counters c, job k, limits l WHERE c.tenant_id = k.tenant_id
    )
    SELECT EXISTS (SELECT 1 FROM job), EXISTS (SELECT 1 FROM allowed),
           EXISTS (SELECT 1 FROM budget), coalesce((SELECT fits FROM alone), true)
    """
)
# A judge's call that fits the budget alone but not beside the reservations in flight:
# running (ours) -> queued, waiting for budget as a claim's wait does (_WAIT_FOR_BUDGET:
# the counters row locked and read again, so no wake is lost), keeping the output and
# the checks so far in judge_pending: its next claim is that judge's call.
_WAIT_FOR_JUDGE = text(
    f"""
    WITH room AS (
        SELECT {_FITS_NOW} AS fits
        FROM budget_counters c JOIN tenants t ON t.id = c.tenant_id
        WHERE c.tenant_id = :tenant_id
        FOR UPDATE OF c
    )
    UPDATE jobs j SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
           enqueued_at = now(), judge_pending = :pending,
           next_attempt_at = CASE WHEN coalesce(r.fits, true) THEN NULL ELSE {BUDGET_WAIT} END
    FROM (SELECT 1) AS one LEFT JOIN room r ON true
    WHERE j.id = :id AND j.status = 'running' AND j.lease_owner = :owner
      AND j.attempts = :attempt_no
    RETURNING NOT coalesce(r.fits, true)
    """
).bindparams(bindparam("pending", type_=JSONB))
_JUDGE_REFUSED = text(
    """
    UPDATE jobs SET status = 'failed', finished_at = now(), error_code = 'budget_exceeded',
           error_retryable = false, result = :result, lease_owner = NULL,
           lease_expires_at = NULL, retry_messages = NULL, retry_reserve_usd = 0,
           judge_pending = NULL,
           error_message = 'the judge call cannot fit the tenant''s budget; it was not made'
    WHERE id = :id AND status = 'running' AND lease_owner = :owner AND attempts = :attempt_no
    RETURNING followers
    """
).bindparams(bindparam("result", type_=JSONB))


def record_call(conn: Connection, job: Claimed, call: CallRecord) -> bool:
    """The call's attempt completed and charged; the job stays running (ours) for its
    judge. False when the attempt was settled already."""
    return bool(conn.execute(_RECORD_CALL, _call_params(job, call)).scalar())


def claim_judge(
    conn: Connection, job: Claimed, owner: str, model: str, reserve: Decimal
) -> Claimed | str:
    """running (ours) -> running (ours) with the judge's call reserved and recorded as the
    next attempt: the Claimed to settle it with. Else "gone" (the job left our hands),
    "over_reserved" (it fits the budget alone, not beside the calls in flight: wait_judge)
    or "over_budget" (it cannot fit even alone)."""
    params = {
        "id": job.id,
        "owner": owner,
        "attempt_no": job.attempt_no,
        "model": model,
        "reserve": reserve,
    }
    ours, allowed, held, fits_alone = conn.execute(_CLAIM_JUDGE, params).one()
    if not ours:
        return "gone"
    if not allowed:
        return "over_reserved" if fits_alone else "over_budget"
    return replace(job, attempt_no=job.attempt_no + 1, reserved_usd=reserve, budget_held=held)


def wait_judge(
    conn: Connection, job: Claimed, owner: str, pending: dict[str, Any], reserve: Decimal
) -> bool | None:
    """running (ours) -> queued with a judge pending (`pending`, whose call reserves
    `reserve`), waiting for budget: True; False when the room is there by now (queued
    and due: publish it); None when the job left our hands."""
    params = {
        "id": job.id,
        "owner": owner,
        "attempt_no": job.attempt_no,
        "tenant_id": job.tenant_id,
        "reserve": reserve,
        "pending": pending,
    }
    row = conn.execute(_WAIT_FOR_JUDGE, params).first()
    return None if row is None else bool(row[0])


def refuse_judge(conn: Connection, job: Claimed, owner: str, result: dict[str, Any]) -> Settled:
    """running (ours) -> failed budget_exceeded: the judge's call does not fit; the
    output stays in the result."""
    params = {"id": job.id, "owner": owner, "attempt_no": job.attempt_no, "result": result}
    followers = conn.execute(_JUDGE_REFUSED, params).first()
    return Settled(ended=followers is not None, followers=int(followers[0] if followers else 0))


# --- provider quotas: waiting is not an attempt -------------------------------------

# running (ours, claimed, its call not made: the quota says wait) -> queued, due when the
# quota frees: the attempt the claim recorded is removed and uncounted, its budget hold
# released, as if the claim had not happened. The sweeper publishes the job when due.
_WAIT_FOR_QUOTA = text(
    """
    WITH call AS (
        DELETE FROM attempts
        WHERE job_id = :id AND attempt_no = :attempt_no AND outcome = 'started'
        RETURNING tenant_id, reserved_usd, budget_held
    ), released AS (
        UPDATE budget_counters c SET
            day_reserved = greatest(c.day_reserved - a.reserved_usd, 0),
            month_reserved = greatest(c.month_reserved - a.reserved_usd, 0)
        FROM call a WHERE c.tenant_id = a.tenant_id AND a.budget_held
    )
    UPDATE jobs SET status = 'queued', attempts = attempts - 1,
           model_attempts = model_attempts - 1, lease_owner = NULL, lease_expires_at = NULL,
           started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,
           enqueued_at = now(), next_attempt_at = now() + make_interval(secs => :wait_s)
    WHERE id = :id AND status = 'running' AND lease_owner = :owner
      AND attempts = :attempt_no AND EXISTS (SELECT 1 FROM call)
    RETURNING id
    """
)
# A provider 429 the quota did not foresee: the call was made (its attempt is kept) but
# does not use one of the model's attempts, so the job waits instead of failing.
_QUOTA_RETRY = _settle(
    """status = 'queued', enqueued_at = now(),
       next_attempt_at = now() + make_interval(secs => :delay_s),
       model_attempts = model_attempts - 1"""
)
_RATE_LIMITED_CALLS = text(
    """
    SELECT count(*) FROM attempts
    WHERE job_id = :id AND error_code = 'provider_rate_limited'
    """
)
# The settles run on the driver like the claim (db.py), by statement.
_SETTLES_ON_DRIVER = {
    statement: DriverStatement(statement)
    for statement in (_SUCCEED, _FAIL, _RETRY, _FALLBACK, _QUOTA_RETRY)
}


def wait_for_quota(conn: Connection, job: Claimed, owner: str, wait_s: float) -> bool:
    """running (ours, no call made) -> queued, due in wait_s, the claim undone. False
    when the job left our hands meanwhile."""
    params = {"id": job.id, "owner": owner, "attempt_no": job.attempt_no, "wait_s": wait_s}
    return conn.execute(_WAIT_FOR_QUOTA, params).first() is not None


def rate_limited_calls(conn: Connection, job_id: uuid.UUID) -> int:
    """The job's calls that the provider answered 429 (settled ones)."""
    return int(conn.execute(_RATE_LIMITED_CALLS, {"id": job_id}).scalar() or 0)


def retry_for_quota(
    conn: Connection, job: Claimed, owner: str, call: CallRecord, delay_s: float
) -> Settled:
    """running (ours, answered 429) -> queued, due after delay_s, no model attempt used."""
    return _run_settle(conn, _QUOTA_RETRY, job, owner, call, delay_s=delay_s)


_CURRENT_MODEL = text(
    """
    SELECT coalesce(judge_pending ->> 'model', current_model), timeout_s
    FROM jobs WHERE id = :id AND status = 'queued'
    """
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


def renew_leases(
    conn: Connection, owner: str, job_ids: Collection[uuid.UUID], lease_s: float
) -> None:
    """running (ours) -> running a lease_s longer, for the jobs whose attempt is in flight."""
    if job_ids:
        conn.execute(_RENEW, {"owner": owner, "ids": list(job_ids), "lease_s": lease_s})


# --- cancel (the client or an admin) ------------------------------------------------

_CANCEL = text(
    """
    UPDATE jobs SET status = 'cancelled', finished_at = now(), error_code = 'cancelled',
           error_message = 'cancelled by the client', error_retryable = false,
           lease_owner = NULL, lease_expires_at = NULL, judge_pending = NULL
    WHERE id = :id AND status IN ('queued', 'running')
    RETURNING leader_id IS NULL AND followers > 0
    """
)


@dataclass(frozen=True)
class Cancel:
    changed: bool  # False when the job had ended already
    heir: uuid.UUID | None = None  # a follower that leads now, to publish


def cancel(conn: Connection, job_id: uuid.UUID) -> Cancel:
    """queued | running -> cancelled. A call in flight keeps its cost record (its settle
    adds it); the followers of a cancelled leader go on, led by the oldest of them."""
    row = conn.execute(_CANCEL, {"id": job_id}).first()
    if row is None:
        return Cancel(changed=False)
    return Cancel(changed=True, heir=promote_heir(conn, job_id) if row[0] else None)


# --- leases and lost work (the sweeper) ---------------------------------------------

# Calls whose worker is gone: the job's lease lapsed, or the job left running (cancelled)
# longer ago than the call could last. Their usage never reached us, so each is charged
# at its reservation (the most it can have cost) and its budget hold is released.
_CLOSE_LOST_CALLS = text(
    """
    WITH lost AS (
        UPDATE attempts a SET outcome = 'interrupted', finished_at = now(),
               error_code = 'internal', cost_usd = a.reserved_usd, cost_estimated = true,
               error_message = 'the worker was lost during the call; charged at its reservation'
        FROM jobs j
        WHERE a.job_id = j.id AND a.outcome = 'started'
          AND ((j.status = 'running' AND j.lease_expires_at < now())
               OR (j.status <> 'running'
                   AND a.started_at < now() - make_interval(secs => j.timeout_s + :grace_s)
                   AND NOT EXISTS (SELECT 1 FROM provider_batches p
                                   WHERE p.id = a.provider_batch_id AND p.state <> 'ended')))
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
# A lapsed job goes back to queued. If the lost call was its model's last attempt, it
# moves on to the next model, as a settle of a retryable failure would (the model list
# is the request's `model` then its `fallbacks`); with none left, the claim fails it.
_REQUEUE_LAPSED = text(
    """
    WITH lapsed AS (
        SELECT id, current_model,
               model_attempts >= max_attempts AND judge_pending IS NULL AS used_up,
               jsonb_build_array(request -> 'model')
                   || coalesce(request -> 'fallbacks', '[]'::jsonb) AS models
        FROM jobs WHERE status = 'running' AND lease_expires_at < now()
        LIMIT :batch FOR UPDATE SKIP LOCKED
    ), moved AS (
        SELECT l.id, (SELECT m.name
                      FROM jsonb_array_elements_text(l.models) WITH ORDINALITY AS m(name, pos)
                      WHERE m.pos > (SELECT min(c.pos) FROM jsonb_array_elements_text(l.models)
                                         WITH ORDINALITY AS c(name, pos)
                                     WHERE c.name = l.current_model)
                      ORDER BY m.pos LIMIT 1) AS next_model
        FROM lapsed l WHERE l.used_up
    )
    UPDATE jobs j SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
           enqueued_at = now(), current_model = coalesce(m.next_model, j.current_model),
           model_attempts = CASE WHEN m.next_model IS NULL THEN j.model_attempts ELSE 0 END,
           retry_messages = CASE WHEN m.next_model IS NULL THEN j.retry_messages END,
           retry_reserve_usd = CASE WHEN m.next_model IS NULL THEN j.retry_reserve_usd
                                    ELSE 0 END
    FROM lapsed l LEFT JOIN moved m ON m.id = l.id
    WHERE j.id = l.id AND j.status = 'running'
    RETURNING j.id
    """
)
_MARK_DUE_RETRIES = text(
    """
    UPDATE jobs SET enqueued_at = now()
    WHERE id IN (SELECT id FROM jobs
                 WHERE status = 'queued' AND next_attempt_at <= now()
                   AND enqueued_at <= next_attempt_at
                 ORDER BY next_attempt_at LIMIT :batch FOR UPDATE SKIP LOCKED)
    RETURNING id
    """
)
_UNCLAIMED = Waiting.of(
    "jobs",
    """status = 'queued' AND leader_id IS NULL AND tier = 'standard'
       AND coalesce(next_attempt_at, '-infinity') <= now()
       AND enqueued_at < now() - make_interval(secs => :stale_s)""",
)


def close_lost_calls(conn: Connection, grace_s: float) -> int:
    """started -> interrupted for calls whose worker is gone, charged at their reservation."""
    return int(conn.execute(_CLOSE_LOST_CALLS, {"grace_s": grace_s}).scalar() or 0)


def requeue_lapsed(conn: Connection, batch: int) -> list[uuid.UUID]:
    """running, lease lapsed -> queued (its worker stopped renewing it), on the next
    model when the lost call was its model's last attempt: to publish."""
    return [row[0] for row in conn.execute(_REQUEUE_LAPSED, {"batch": batch})]


def mark_due_retries(conn: Connection, batch: int) -> list[uuid.UUID]:
    """Queued retries whose due time has come and that were not published for it."""
    return [row[0] for row in conn.execute(_MARK_DUE_RETRIES, {"batch": batch})]


def mark_unclaimed(
    conn: Connection, *, queue_length: int, stale_s: float, batch: int, trickle: int
) -> list[uuid.UUID]:
    """Queued jobs published longer than stale_s ago and not claimed: the broker may
    have lost their message (aijobs/lost_work.py says how many go out again)."""
    return list(
        _UNCLAIMED.lost(
            conn, queue_length=queue_length, stale_s=stale_s, batch=batch, trickle=trickle
        )
    )


# --- re-run (an admin) --------------------------------------------------------------

_LOCK_FOR_RERUN = text(
    "SELECT status, tenant_id, fingerprint, purged FROM jobs WHERE id = :id FOR UPDATE"
)
# A fresh cached success answers the re-run at once.
_RERUN_FROM_CACHE = text(
    """
    UPDATE jobs j SET status = 'succeeded', finished_at = now(), result = c.result,
           current_model = c.model, cache_hit = true, saved_usd = j.saved_usd + c.cost_usd,
           checks = c.checks,
           error_code = NULL, error_message = NULL, error_retryable = NULL
    FROM cache_entries c
    WHERE j.id = :id AND c.tenant_id = j.tenant_id AND c.fingerprint = j.fingerprint
      AND c.expires_at > now()
    RETURNING j.id
    """
)
# Back to queued, as a new run of the same job: its attempts stay (numbering goes on),
# its result and error go; it leads, or follows an identical job in flight.
_REQUEUE_FOR_RERUN = text(
    """
    UPDATE jobs SET status = 'queued', started_at = NULL, finished_at = NULL, result = NULL,
           error_code = NULL, error_message = NULL, error_retryable = NULL,
           current_model = model, model_attempts = 0, next_attempt_at = NULL,
           enqueued_at = now(), lease_owner = NULL, lease_expires_at = NULL,
           cache_hit = false, leader_id = :leader_id, followers = 0, checks = NULL,
           retry_messages = NULL, retry_reserve_usd = 0, judge_pending = NULL
    WHERE id = :id
    """
)


@dataclass(frozen=True)
class Rerun:
    """How a re-run went: `publish` when the job leads a new run; `skipped` says why
    nothing happened; neither when it was answered at once (cache hit, follower)."""

    publish: bool = False
    skipped: str | None = None


def rerun(conn: Connection, job_id: uuid.UUID) -> Rerun:
    """terminal -> queued (or succeeded from the cache, or a follower). In a transaction:
    the row lock, then the status check, so two re-runs of one job at once run it once."""
    job = conn.execute(_LOCK_FOR_RERUN, {"id": job_id}).first()
    if job is None:
        return Rerun(skipped="no such job")
    status, tenant_id, fingerprint, purged = job
    if status not in TERMINAL:
        return Rerun(skipped=f"{status}: not finished")
    if purged:  # its request is gone (retention): nothing left to run
        return Rerun(skipped="purged")
    leader = None
    if fingerprint is not None:
        if conn.execute(_RERUN_FROM_CACHE, {"id": job_id}).first() is not None:
            return Rerun()
        same = {"id": job_id, "tenant_id": tenant_id, "fingerprint": fingerprint}
        leader = conn.execute(JOIN_LIVE_LEADER, same).scalar()
    conn.execute(_REQUEUE_FOR_RERUN, {"id": job_id, "leader_id": leader})
    return Rerun(publish=leader is None)


# --- followers (identical jobs waiting on a leader) ---------------------------------

# A follower of a leader that succeeded is a cache hit (cost 0, the call's price saved);
# of one that failed, it fails with the same error. Either way it shows the leader's checks.
_FINISH_FOLLOWERS = text(
    """
    UPDATE jobs f SET status = l.status, started_at = coalesce(f.started_at, now()),
           finished_at = now(), result = l.result, error_code = l.error_code,
           error_message = l.error_message, error_retryable = l.error_retryable,
           current_model = l.current_model, cache_hit = (l.status = 'succeeded'),
           checks = l.checks,
           saved_usd = CASE WHEN l.status = 'succeeded' THEN coalesce(
               (SELECT c.cost_usd FROM cache_entries c
                WHERE c.tenant_id = l.tenant_id AND c.fingerprint = l.fingerprint), 0)
               ELSE 0 END
    FROM jobs l
    WHERE l.id = :leader AND f.leader_id = l.id AND f.status = 'queued'
      AND l.status IN ('succeeded', 'failed')
    RETURNING f.id
    """
)
# A new leader for the same request may exist already (it arrived after the cancel).
_LOCK_NEWER_LEADER = text(
    """
    SELECT n.id FROM jobs n JOIN jobs l ON l.id = :leader
    WHERE n.tenant_id = l.tenant_id AND n.fingerprint = l.fingerprint
      AND n.leader_id IS NULL AND n.status IN ('queued', 'running')
    FOR UPDATE OF n
    """
)
_MOVE_FOLLOWERS_TO_NEWER_LEADER = text(
    """
    WITH moved AS (
        UPDATE jobs SET leader_id = :heir WHERE leader_id = :leader AND status = 'queued'
        RETURNING id
    )
    UPDATE jobs SET followers = followers + (SELECT count(*) FROM moved) WHERE id = :heir
    """
)
_LOCK_OLDEST_FOLLOWER = text(
    """
    SELECT id FROM jobs WHERE leader_id = :leader AND status = 'queued'
    ORDER BY created_at, id LIMIT 1 FOR UPDATE
    """
)
_PROMOTE_HEIR = text(
    """
    UPDATE jobs SET leader_id = NULL, enqueued_at = now(),
           followers = (SELECT count(*) FROM jobs
                        WHERE leader_id = :leader AND status = 'queued' AND id <> :heir)
    WHERE id = :heir
    """
)
_FOLLOW_HEIR = text(
    "UPDATE jobs SET leader_id = :heir WHERE leader_id = :leader AND status = 'queued'"
)
_ENDED_LEADERS_WITH_FOLLOWERS = text(
    """
    SELECT DISTINCT f.leader_id FROM jobs f JOIN jobs l ON l.id = f.leader_id
    WHERE f.leader_id IS NOT NULL AND f.status = 'queued'
      AND l.status IN ('succeeded', 'failed', 'cancelled')
    LIMIT :batch
    """
)


def finish_followers(conn: Connection, leader_id: uuid.UUID) -> list[uuid.UUID]:
    """queued followers of an ended leader -> its outcome (succeeded as cache hits, or
    failed with its error)."""
    return [row[0] for row in conn.execute(_FINISH_FOLLOWERS, {"leader": leader_id})]


def promote_heir(conn: Connection, leader_id: uuid.UUID) -> uuid.UUID | None:
    """The leader was cancelled: its oldest follower leads now (to be published), the
    others follow it. Run in the transaction that cancelled the leader."""
    live = conn.execute(_LOCK_NEWER_LEADER, {"leader": leader_id}).scalar()
    if live is not None:
        conn.execute(_MOVE_FOLLOWERS_TO_NEWER_LEADER, {"leader": leader_id, "heir": live})
        return None
    heir = conn.execute(_LOCK_OLDEST_FOLLOWER, {"leader": leader_id}).scalar()
    if heir is None:
        return None
    conn.execute(_PROMOTE_HEIR, {"leader": leader_id, "heir": heir})
    conn.execute(_FOLLOW_HEIR, {"leader": leader_id, "heir": heir})
    return uuid.UUID(str(heir))


def settle_orphans(conn: Connection, batch: int = 100) -> list[uuid.UUID]:
    """Followers whose leader ended without passing its outcome on (its worker died
    between the two): finish them, or promote an heir. Returns heirs to publish."""
    heirs: list[uuid.UUID] = []
    for (leader_id,) in conn.execute(_ENDED_LEADERS_WITH_FOLLOWERS, {"batch": batch}).all():
        finish_followers(conn, leader_id)
        heir = promote_heir(conn, leader_id)
        if heir is not None:
            heirs.append(heir)
    return heirs


# --- retention (the sweeper) --------------------------------------------------------

# ended, older than the retention period -> purged: what the tenant sent and what came
# back is removed, for up to :batch jobs, oldest first (ix_jobs_purge_due). The job row,
# its attempts (tokens, costs), the budget counters and the cache savings stay, so
# usage reports and budgets do not change. Removed with the request and the result:
# - metadata: sent by the tenant with the request, free-form (user ids, emails);
# - error messages of the job and of its attempts: some quote the output (a schema
#   mismatch names the offending value) or the provider's echo of the prompt; the
#   codes stay;
# - the fingerprint: a hash of the prompt still confirms a guessed prompt;
# - webhook delivery bodies (the job object, result and all) and the receiver's
#   answers; a redelivery rebuilds the body from the purged job;
# - the cache entry the job's answer lives on in (written no later than the job
#   ended), whatever AIJOBS_CACHE_TTL_S says; a newer entry for the same request stays.
# The webhook URL stays: it is the tenant's endpoint, not content. A job whose webhook
# is being sent right now is left for a later sweep (the send holds its body). Row locks
# are skipped, not waited for, so the purge never stalls a worker; a purged job leaves
# the partial index, so running it twice purges nothing twice.
_PURGE_EXPIRED = text(
    """
    WITH expired AS (
        SELECT j.id, j.tenant_id, j.fingerprint, j.finished_at FROM jobs j
        WHERE NOT j.purged AND j.finished_at IS NOT NULL
          AND j.finished_at < now() - make_interval(days => :days)
          AND j.status IN ('succeeded', 'failed', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                          WHERE d.job_id = j.id AND d.status = 'sending')
        ORDER BY j.finished_at LIMIT :batch
        FOR UPDATE OF j SKIP LOCKED
    ), purged AS (
        UPDATE jobs j SET purged = true, request = '{}'::jsonb, result = NULL,
               metadata = '{}'::jsonb, error_message = NULL, fingerprint = NULL,
               retry_messages = NULL, judge_pending = NULL
        FROM expired e WHERE j.id = e.id
        RETURNING j.id
    ), calls AS (
        UPDATE attempts a SET error_message = NULL
        FROM expired e WHERE a.job_id = e.id AND a.error_message IS NOT NULL
    ), bodies AS (
        UPDATE webhook_deliveries d SET body = NULL
        FROM expired e WHERE d.job_id = e.id AND d.body IS NOT NULL
    ), answers AS (
        UPDATE webhook_attempts w SET response_body = NULL
        FROM expired e WHERE w.job_id = e.id AND w.response_body IS NOT NULL
    ), cached AS (
        DELETE FROM cache_entries c USING expired e
        WHERE c.tenant_id = e.tenant_id AND c.fingerprint = e.fingerprint
          AND c.created_at <= e.finished_at
    )
    SELECT count(*) FROM purged
    """
)


def purge_expired(conn: Connection, days: int, batch: int) -> int:
    """ended more than `days` days ago (database clock) -> purged, for up to `batch`
    jobs; returns how many. A full batch means more may be due."""
    return int(conn.execute(_PURGE_EXPIRED, {"days": days, "batch": batch}).scalar() or 0)
