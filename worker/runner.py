"""Run one attempt of a job: claim it (recording the call), call the provider, settle.

Each run makes at most one provider call. A retry goes back to queued with a due
time in Postgres, so waiting never holds a worker slot. Attempts run on the worker's
call loop (worker/call_loop.py): the claim and the settle on its database threads,
the provider call awaited in between.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from aijobs import metrics, sentry
from aijobs.billing import budget
from aijobs.billing.pricing import price_for
from aijobs.db import autocommit
from aijobs.jobs import transitions
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.structured import InvalidOutput, parse_output
from aijobs.settings import get_settings
from worker import inflight
from worker.providers.base import Completion, ProviderError
from worker.providers.errors import map_exception
from worker.providers.registry import provider_for
from worker.retry_policy import retry_delay

log = logging.getLogger("aijobs.worker")


def _result(completion: Completion, parsed: Any) -> dict[str, Any]:
    return {
        "content": completion.content,
        "parsed": parsed,
        "embeddings": completion.embeddings,
        "finish_reason": completion.finish_reason,
    }


async def _call(
    job: transitions.Claimed,
) -> tuple[Completion | None, Any, ProviderError | None, int]:
    """One provider call, its output validated; never raises."""
    request = JobRequest.model_validate(job.request)
    started = time.monotonic()
    completion: Completion | None = None
    parsed: Any = None
    error: ProviderError | None = None
    in_flight = metrics.CALLS_IN_FLIGHT.labels(job.model)
    in_flight.inc()
    try:
        provider, name = provider_for(job.model)
        completion = await provider.run(name, request, job.timeout_s)
        if request.response_schema is not None:
            parsed = parse_output(completion.content, request.response_schema)
    except InvalidOutput as exc:
        error = ProviderError("invalid_output", str(exc), retryable=True)
    except Exception as exc:
        error = map_exception(exc)
        if error.code == "internal":
            log.exception("job %s: unexpected error in the provider call", job.id)
    finally:
        in_flight.dec()
    elapsed = time.monotonic() - started
    metrics.PROVIDER_LATENCY.labels(job.model, error.code if error else "ok").observe(elapsed)
    return completion, parsed, error, int(elapsed * 1000)


def _next_model(job: transitions.Claimed) -> str | None:
    models = [job.request["model"], *job.request.get("fallbacks", [])]
    position = models.index(job.model) if job.model in models else len(models)
    return models[position + 1] if position + 1 < len(models) else None


CAPPED_RETRY_S = 0.5


@dataclass(frozen=True)
class Started:
    """A claimed job whose call is to be made, and the in-flight cap slot it holds."""

    job: transitions.Claimed
    cap_slot: tuple[str, str] | None = None  # (model, slot)


def claim(job_id: uuid.UUID, owner: str) -> Started | str:
    """Take the job for one call (after its model's in-flight cap, if it has one); what
    happened instead when there is nothing to call: skipped | deferred | failed."""
    cap_slot = None
    if inflight.caps() or get_settings().model_inflight_cap:
        with autocommit() as conn:
            upcoming = transitions.next_call(conn, job_id)
        if upcoming is None:
            return "skipped"
        model, timeout_s = upcoming
        if inflight.cap_for(model):
            slot = f"{job_id}:{owner}"
            if not inflight.acquire(model, slot, hold_s=timeout_s + 30):
                with autocommit() as conn:
                    transitions.defer(conn, job_id, CAPPED_RETRY_S)
                return "deferred"
            cap_slot = (model, slot)
    job: transitions.Claimed | str | None = None
    try:
        job = _claim(job_id, owner)
    finally:
        if cap_slot and not isinstance(job, transitions.Claimed):
            inflight.release(*cap_slot)  # no call is made under it
    return Started(job, cap_slot) if isinstance(job, transitions.Claimed) else job


async def complete(started: Started, owner: str) -> str:
    """Make the claimed job's call and settle it: succeeded | failed | retrying."""
    job = started.job
    tags = {
        "job_id": str(job.id),
        "tenant": str(job.tenant_id),
        "model": job.model,
        "attempt": str(job.attempt_no),
    }
    try:
        with sentry.job_scope(**tags):
            completion, parsed, error, latency_ms = await _call(job)
        return await asyncio.to_thread(_record, job, owner, completion, parsed, error, latency_ms)
    finally:
        if started.cap_slot:
            await asyncio.to_thread(inflight.release, *started.cap_slot)


def _claim(job_id: uuid.UUID, owner: str) -> transitions.Claimed | str:
    """The claim statement; what happened instead when there is nothing to call."""
    today, month = budget.periods()
    with autocommit() as conn:
        job = transitions.claim(
            conn, job_id, owner, get_settings().lease_s, today=today, month=month
        )
        if isinstance(job, transitions.Refused):
            metrics.JOBS_FINISHED.labels("failed", job.code).inc()
            if job.code == "budget_exceeded":
                metrics.BUDGET_REJECTIONS.labels("worker").inc()
            if job.followers:
                transitions.finish_followers(conn, job_id)
            log.info("job %s: refused (%s)", job_id, job.code)
            return "failed"
    return "skipped" if job is None else job


def _record(
    job: transitions.Claimed,
    owner: str,
    completion: Completion | None,
    parsed: Any,
    error: ProviderError | None,
    latency_ms: int,
) -> str:
    """The settle statement, with the call's cost, metrics and log line."""
    input_tokens = completion.input_tokens if completion else 0
    output_tokens = completion.output_tokens if completion else 0
    call = transitions.CallRecord(
        outcome="failed" if error else "succeeded",
        latency_ms=latency_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=price_for(job.model).cost(input_tokens, output_tokens),
        error_code=error.code if error else None,
        error_message=error.message[:2000] if error else None,
        http_status=error.http_status if error else None,
    )
    metrics.TOKENS.labels(job.model, "input").inc(input_tokens)
    metrics.TOKENS.labels(job.model, "output").inc(output_tokens)
    metrics.SPEND.labels(job.model).inc(float(call.cost_usd))
    with autocommit() as conn:
        outcome, settled = _settle(conn, job, owner, call, completion, parsed, error)
        followers = []
        if settled.ended and settled.followers and outcome != "retrying":
            followers = transitions.finish_followers(conn, job.id)
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
            "cost_usd": str(call.cost_usd),
            "error_code": error.code if error else None,
        },
    )
    return outcome


def _settle(
    conn: Connection,
    job: transitions.Claimed,
    owner: str,
    call: transitions.CallRecord,
    completion: Completion | None,
    parsed: Any,
    error: ProviderError | None,
) -> tuple[str, transitions.Settled]:
    """Succeed, retry, fall back or fail, by what the call gave."""
    settings = get_settings()
    if error is None and completion is not None:
        result = _result(completion, parsed)
        settled = transitions.succeed(
            conn, job, owner, call, result, cache_ttl_s=settings.cache_ttl_s
        )
        return "succeeded", settled
    assert error is not None
    next_model = _next_model(job)
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
        result=_result(completion, None) if completion is not None else None,
    )
    return "failed", settled
