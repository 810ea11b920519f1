"""Settle one attempt: record what the call cost and how it ended, and move the job on
(succeeded, retry, fall back, failed) through the state machine.

A claimed attempt always settles. Its values are made storable first (a NUL in a
model's answer); a price missing on this worker charges the call at its reservation;
transient database errors (a failover, a restarted server, a dead pooled connection)
are retried with backoff, within the lease; a statement that still cannot run records
the attempt as failed `internal`. If even that cannot run, the caller drops the
attempt, its lease lapses and the sweeper takes the job over."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from aijobs import metrics
from aijobs.billing.call_bounds import added_input_cost
from aijobs.billing.pricing import price_for
from aijobs.checks import run as checks
from aijobs.db import autocommit
from aijobs.jobs import transitions
from aijobs.money import usd
from aijobs.settings import get_settings
from aijobs.storable import storable, storable_text
from aijobs.streaming import writer as events
from worker.providers.base import Completion, ProviderError
from worker.retry_policy import retry_delay

log = logging.getLogger("aijobs.worker")

# About 16 s in all: shorter than a lease (20 s by default), so a settle that gets
# through is still ours.
DB_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
T = TypeVar("T")


def transient(exc: BaseException) -> bool:
    """A database error that may pass: the connection, not the statement."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def with_db_retries(what: str, statement: Callable[[Connection], T]) -> T:
    """Run `statement` on an autocommit connection, again after transient errors."""
    for delay in (*DB_RETRY_DELAYS_S, None):
        try:
            with autocommit() as conn:
                return statement(conn)
        except Exception as exc:
            if delay is None or not transient(exc):
                raise
            log.warning("%s: database error (%s); again in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def result_of(completion: Completion, parsed: Any) -> dict[str, Any]:
    """The job's result from the call's answer (made storable)."""
    result = {
        "content": completion.content,
        "parsed": parsed,
        "embeddings": completion.embeddings,
        "finish_reason": completion.finish_reason,
    }
    return dict(storable(result))


def _next_model(job: transitions.Claimed) -> str | None:
    models = [job.request["model"], *job.request.get("fallbacks", [])]
    position = models.index(job.model) if job.model in models else len(models)
    return models[position + 1] if position + 1 < len(models) else None


def call_record(
    job: transitions.Claimed,
    completion: Completion | None,
    error: ProviderError | None,
    latency_ms: int,
    results: Sequence[checks.Result] = (),
    *,
    model: str | None = None,
) -> tuple[transitions.CallRecord, ProviderError | None]:
    """What the call cost (at `model`'s price: the job's model unless a judge's) and how
    it ended, with the checks run on its answer."""
    # A call in a provider batch is priced at the batch price (a judge's never is).
    tier = job.tier if model is None else "standard"
    model = model or job.model
    input_tokens = completion.input_tokens if completion else 0
    output_tokens = completion.output_tokens if completion else 0
    cached_input_tokens = completion.cached_input_tokens if completion else 0
    cache_write_tokens = completion.cache_write_tokens if completion else 0
    try:
        cost = price_for(model).cost(
            input_tokens,
            output_tokens,
            cached_input_tokens=cached_input_tokens,
            cache_write_tokens=cache_write_tokens,
            tier=tier,
        )
    except Exception:
        log.exception("job %s: no price for %s on this worker", job.id, model)
        cost = job.reserved_usd  # the most the call can have cost
        error = ProviderError(
            "internal",
            f"{model} has no price on this worker; the call is charged at its reservation",
            retryable=False,
        )
    call = transitions.CallRecord(
        outcome="failed" if error else "succeeded",
        latency_ms=latency_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        cached_input_tokens=cached_input_tokens,
        cache_write_tokens=cache_write_tokens,
        error_code=error.code if error else None,
        error_message=storable_text(error.message[:2000]) if error else None,
        http_status=error.http_status if error else None,
        checks=[result.as_json() for result in results] if results else None,
    )
    return call, error


def record(
    job: transitions.Claimed,
    owner: str,
    completion: Completion | None,
    parsed: Any,
    error: ProviderError | None,
    latency_ms: int,
    results: Sequence[checks.Result] = (),
    *,
    judged: transitions.CallRecord | None = None,
    judge_model: str = "",
    output_cost_usd: Decimal | None = None,
) -> str:
    """Settle the attempt, with the call's cost, its checks, metrics and log line:
    succeeded | failed | retrying. With `judged`, the attempt is a judge's call (its
    record): the job ends or moves on by all of `results`, its result the output
    `completion` gave. Raises only when nothing could be recorded."""
    if judged is not None:
        call = replace(
            judged,
            job_checks=[result.as_json() for result in results],
            output_cost_usd=(output_cost_usd or Decimal(0)) + judged.cost_usd,
        )
    else:
        call, error = call_record(job, completion, error, latency_ms, results)
    count_usage(judge_model or job.model, call)
    for result in results:
        if not result.passed:
            metrics.CHECK_FAILURES.labels(job.prompt_name, result.type).inc()
    what = f"job {job.id} attempt {job.attempt_no}"
    try:
        outcome, settled = with_db_retries(
            what, lambda conn: _settle(conn, job, owner, call, completion, parsed, error, results)
        )
    except Exception as exc:
        log.exception("%s: the settle failed; recording it as failed internal", what)
        failed = ProviderError(
            "internal",
            f"the attempt's outcome could not be stored ({type(exc).__name__})",
            retryable=False,
        )
        call, error = call_record(job, None, failed, latency_ms)
        outcome, settled = with_db_retries(
            what, lambda conn: _settle(conn, job, owner, call, None, None, error)
        )
    followers: list[Any] = []
    if settled.ended and settled.followers and outcome != "retrying":
        try:
            followers = with_db_retries(what, lambda c: transitions.finish_followers(c, job.id))
        except Exception:  # the sweeper finishes them (settle_orphans)
            log.exception("%s: its followers are left to the sweeper", what)
        for follower in followers:
            events.ended(follower, outcome)
    if settled.ended and outcome != "retrying":
        code = error.code if error and outcome == "failed" else ""
        metrics.JOBS_FINISHED.labels(outcome, code).inc(1 + len(followers))
    log.info(
        "job %s attempt %d: %s",
        job.id,
        job.attempt_no,
        outcome,
        extra={
            "job_id": str(job.id),
            "tenant": str(job.tenant_id),
            "model": job.model,
            "attempt": job.attempt_no,
            "status": outcome,
            "latency_ms": latency_ms,
            "cost_usd": usd(call.cost_usd),
            "error_code": error.code if error else None,
        },
    )
    return outcome


def count_usage(model: str, call: transitions.CallRecord) -> None:
    metrics.TOKENS.labels(model, "input").inc(call.input_tokens)
    metrics.TOKENS.labels(model, "output").inc(call.output_tokens)
    metrics.SPEND.labels(model).inc(float(call.cost_usd))


def _settle(
    conn: Connection,
    job: transitions.Claimed,
    owner: str,
    call: transitions.CallRecord,
    completion: Completion | None,
    parsed: Any,
    error: ProviderError | None,
    results: Sequence[checks.Result] = (),
) -> tuple[str, transitions.Settled]:
    """Succeed, retry, fall back or fail, by what the call gave."""
    settings = get_settings()
    if error is not None and error.code == "check_failed" and completion is not None:
        return _settle_check_failure(conn, job, owner, call, completion, parsed, error, results)
    if error is None and completion is not None:
        result = result_of(completion, parsed)
        settled = transitions.succeed(
            conn,
            job,
            owner,
            call,
            result,
            cache_ttl_s=settings.cache_ttl_s,
            cache_cost_usd=call.output_cost_usd,
        )
        return "succeeded", settled
    assert error is not None
    next_model = _next_model(job)
    if error.code == "provider_rate_limited" and (
        transitions.rate_limited_calls(conn, job.id) < settings.quota_free_429s
    ):
        # A quota runs out into waiting, not into failed attempts (docs/scheduling.md).
        delay = retry_delay(
            job.model_attempt_no,
            base_s=settings.retry_base_s,
            cap_s=settings.retry_cap_s,
            retry_after_s=error.retry_after_s,
        )
        settled = transitions.retry_for_quota(conn, job, owner, call, delay)
        log.info("job %s: attempt %d answered 429, waits %.2fs", job.id, job.attempt_no, delay)
        return "retrying", settled
    if error.retryable and job.model_attempt_no < job.max_attempts:
        delay = retry_delay(
            job.model_attempt_no,
            base_s=settings.retry_base_s,
            cap_s=settings.retry_cap_s,
            retry_after_s=error.retry_after_s,
        )
        settled = transitions.schedule_retry(conn, job, owner, call, delay)
        log.info("job %s: attempt %d %s, retry in %.2fs", job.id, job.attempt_no, error.code, delay)
        return "retrying", settled
    if error.retryable and next_model is not None:
        settled = transitions.fall_back(conn, job, owner, call, next_model)
        log.info("job %s: %s ended in %s; next: %s", job.id, job.model, error.code, next_model)
        return "retrying", settled
    # The last raw output stays on a failed job for debugging.
    settled = transitions.fail(
        conn,
        job,
        owner,
        call,
        code=error.code,
        message=error.message,
        retryable=error.retryable,
        result=result_of(completion, None) if completion is not None else None,
    )
    return "failed", settled


def _settle_check_failure(
    conn: Connection,
    job: transitions.Claimed,
    owner: str,
    call: transitions.CallRecord,
    completion: Completion,
    parsed: Any,
    error: ProviderError,
    results: Sequence[checks.Result],
) -> tuple[str, transitions.Settled]:
    """An answer that failed its checks, by the strictest failing check's on_fail:
    retry the same model with the failed output and what failed (while it has
    attempts), fall back to the next model, or fail check_failed keeping the output."""
    wanted = checks.action(results)
    next_model = _next_model(job)
    if wanted == "retry" and job.model_attempt_no < job.max_attempts:
        messages = checks.retry_messages(completion.content, results)
        reserve = added_input_cost(messages, job.model)
        # A check failure is not transient: no backoff, the next attempt is due now.
        settled = transitions.schedule_retry(
            conn, job, owner, call, 0, retry_messages=messages, retry_reserve_usd=reserve
        )
        log.info("job %s: attempt %d failed its checks; retry", job.id, job.attempt_no)
        return "retrying", settled
    if wanted in ("retry", "fallback") and next_model is not None:
        settled = transitions.fall_back(conn, job, owner, call, next_model)
        log.info("job %s: %s failed its checks; next: %s", job.id, job.model, next_model)
        return "retrying", settled
    settled = transitions.fail(
        conn,
        job,
        owner,
        call,
        code="check_failed",
        message=error.message,
        retryable=False,
        result=result_of(completion, parsed),
    )
    return "failed", settled
