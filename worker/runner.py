"""Run one attempt of a job: claim it (recording the call), call the provider, settle.

Each run makes at most one provider call. A retry goes back to queued with a due
time in Postgres, so waiting never holds a worker slot. Attempts run on the worker's
call loop (worker/call_loop.py): the claim and the settle on its database threads,
the provider call awaited in between.

A call that fits its tenant's budget alone but not beside the reservations of calls in
flight is not made yet: its job goes back to queued, waiting for budget (no attempt
counted), and the settle of a call that held a reservation wakes the tenant's waiting
jobs that fit now (the sweeper also checks them on every pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aijobs import metrics, sentry
from aijobs.checks import run as checks
from aijobs.db import autocommit
from aijobs.jobs import transitions
from aijobs.jobs.schemas import JobRequest, Message
from aijobs.jobs.structured import InvalidOutput, parse_output
from aijobs.settings import get_settings
from worker import (
    budget_waiters,
    enqueue,
    inflight,
    job_events,
    judging,
    provider_quota,
    settle,
)
from worker.providers.base import Completion, ProviderError
from worker.providers.errors import map_exception
from worker.providers.registry import provider_for

log = logging.getLogger("aijobs.worker")


def _sent(request: JobRequest, job: transitions.Claimed) -> JobRequest:
    """The request as this call sends it: after a failed check, with the failed output
    and what failed appended (reserved with the call at claim)."""
    if not job.retry_messages or request.messages is None:
        return request
    added = [Message.model_validate(message) for message in job.retry_messages]
    return request.model_copy(update={"messages": [*request.messages, *added]})


async def _call(
    job: transitions.Claimed, on_delta: Callable[[str], None] | None = None
) -> tuple[Completion | None, Any, ProviderError | None, int, list[checks.Result]]:
    """One provider call, its output validated (response_schema, then the output
    checks); never raises. timeout_s bounds the whole call (connect, headers, body,
    streaming), not each read. A job asking to stream has its text passed to
    `on_delta` as it arrives."""
    started = time.monotonic()
    completion: Completion | None = None
    parsed: Any = None
    error: ProviderError | None = None
    results: list[checks.Result] = []
    in_flight = metrics.CALLS_IN_FLIGHT.labels(job.model)
    in_flight.inc()
    try:
        request = JobRequest.model_validate(job.request)
        provider, name = provider_for(job.model)
        async with asyncio.timeout(job.timeout_s):
            completion = await provider.run(
                name, _sent(request, job), job.timeout_s, on_delta=on_delta
            )
        parsed, error, results = check_output(request, completion)
    except TimeoutError:
        error = ProviderError(
            "provider_timeout",
            f"the call took longer than its timeout_s ({job.timeout_s:g} s)",
            retryable=True,
        )
    except Exception as exc:
        error = map_exception(exc)
        if error.code == "internal" or error.unexpected:
            log.exception("job %s: unexpected error in the provider call", job.id)
    finally:
        in_flight.dec()
    elapsed = time.monotonic() - started
    metrics.PROVIDER_LATENCY.labels(job.model, error.code if error else "ok").observe(elapsed)
    return completion, parsed, error, int(elapsed * 1000), results


def check_output(
    request: JobRequest, completion: Completion
) -> tuple[Any, ProviderError | None, list[checks.Result]]:
    """An answer validated as every call's is (response_schema, then the output checks):
    (parsed, the error that makes the call failed or None, the checks' results)."""
    parsed: Any = None
    results: list[checks.Result] = []
    try:
        if request.response_schema is not None:
            parsed = parse_output(completion.content, request.response_schema)
    except InvalidOutput as exc:
        return None, ProviderError("invalid_output", str(exc), retryable=True), results
    if request.task == "chat":
        results = checks.run_output(request.checks, completion.content)
        if checks.action(results) is not None:
            error = ProviderError("check_failed", checks.summary(results), retryable=True)
            return parsed, error, results
    return parsed, None, results


CAPPED_RETRY_S = 0.5


@dataclass(frozen=True)
class Started:
    """A claimed job whose call is to be made, and the in-flight cap slot it holds."""

    job: transitions.Claimed
    cap_slot: tuple[str, str] | None = None  # (model, slot)
    quota: provider_quota.Ticket | None = None  # what the call holds of its model's quota


def claim(job_id: uuid.UUID, owner: str) -> Started | str:
    """Take the job for one call (after its model's in-flight cap, if it has one); what
    happened instead when there is nothing to call: skipped | deferred | failed |
    waiting (for budget)."""
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
    ticket = None
    try:
        job = _claim(job_id, owner)
        if (
            isinstance(job, transitions.Claimed)
            and job.judge_pending is None  # a judge resumed: no call to the job's model
            and provider_quota.applies(job.model)
        ):
            job, ticket = _admit(job, owner, slot_held=cap_slot is not None)
    finally:
        if cap_slot and not isinstance(job, transitions.Claimed):
            inflight.release(*cap_slot)  # no call is made under it
    return Started(job, cap_slot, ticket) if isinstance(job, transitions.Claimed) else job


def _admit(
    job: transitions.Claimed, owner: str, slot_held: bool
) -> tuple[transitions.Claimed | str, provider_quota.Ticket | None]:
    """The claimed call, admitted by its model's quota; or "waiting" (for quota: the
    claim is undone, no attempt counted) when the quota says wait."""
    try:
        admitted = provider_quota.admit(job, slot_held)
    except Exception:  # Redis is away: the call goes unpaced rather than not at all
        log.warning("job %s: the quota of %s could not be read", job.id, job.model, exc_info=True)
        return job, None
    if isinstance(admitted, provider_quota.Ticket):
        return job, admitted
    settle.with_db_retries(
        f"job {job.id}: quota wait",
        lambda conn: transitions.wait_for_quota(conn, job, owner, admitted),
    )
    log.info("job %s: waits %.2fs for %s's quota", job.id, admitted, job.model)
    return "waiting", None


async def complete(started: Started, owner: str) -> str:
    """Make the claimed job's call and settle it: succeeded | failed | retrying, or
    dropped when nothing could be recorded. Never raises."""
    job = started.job
    tags = {
        "job_id": str(job.id),
        "tenant": str(job.tenant_id),
        "model": job.model,
        "attempt": str(job.attempt_no),
    }
    streams = bool(job.request.get("stream"))
    events = job_events.AttemptEvents(job.id, live=streams or job_events.watched(job.id))
    error: ProviderError | None = None
    try:
        with sentry.job_scope(**tags):
            if job.judge_pending is not None:
                # A judge that waited for budget: the output is kept, its model not called.
                outcome = await judging.resume(job, owner)
            else:
                events.emit("status", {"status": "running"})
                events.emit("attempt", {"number": job.attempt_no, "model": job.model})
                if started.quota is not None and started.quota.start_in_s > 0:
                    await asyncio.sleep(started.quota.start_in_s)  # its place in the quota
                completion, parsed, error, latency_ms, results = await _call(
                    job, events.delta if streams else None
                )
                if started.quota is not None:
                    await asyncio.to_thread(
                        provider_quota.observe, started.quota, completion, error
                    )
                judges = judging.judges_of(job) if error is None and completion else []
                if completion is not None and judges:
                    outcome = await judging.judge_and_settle(
                        job, owner, completion, parsed, latency_ms, results, judges
                    )
                else:
                    outcome = await asyncio.to_thread(
                        settle.record, job, owner, completion, parsed, error, latency_ms, results
                    )
        _outcome_events(events, job, outcome, error)
        await events.close()
        if outcome == "due":  # its judge waited, and the room was there by then
            with contextlib.suppress(Exception):  # else the sweeper publishes it
                await asyncio.to_thread(_publish, [job.id])
        return outcome
    except Exception:
        # Nothing could be recorded: the caller stops renewing the lease, which lapses,
        # and the sweeper charges the call at its reservation and re-queues the job.
        log.exception("job %s attempt %d: dropped, left to the sweeper", job.id, job.attempt_no)
        return "dropped"
    finally:
        if started.cap_slot:
            with contextlib.suppress(Exception):  # the slot expires by itself
                await asyncio.to_thread(inflight.release, *started.cap_slot)
        if started.quota is not None:
            with contextlib.suppress(Exception):  # the slot expires by itself
                await asyncio.to_thread(provider_quota.release, started.quota)


def _outcome_events(
    events: job_events.AttemptEvents,
    job: transitions.Claimed,
    outcome: str,
    error: ProviderError | None,
) -> None:
    """What the settled attempt means to the job's followers (written after the
    settle committed, so a follower reading the job on `done` finds it ended). A job
    followed since its claim has its end written too."""
    events.live = events.live or job_events.watched(job.id)
    if outcome in ("succeeded", "failed"):
        events.emit("status", {"status": outcome})
        events.emit("done", {})
    elif outcome == "retrying":  # the next attempt (or model) streams anew
        code = error.code if error is not None else "check_failed"
        events.emit("reset", {"attempt": job.attempt_no, "code": code})
        events.emit("status", {"status": "queued"})
    elif outcome in ("waiting", "due"):  # its judge waits for budget: the output stays
        events.emit("status", {"status": "queued"})


# Claim rounds when a call waiting for budget finds the room freed meanwhile.
CLAIM_ROUNDS = 3


def _claim(job_id: uuid.UUID, owner: str) -> transitions.Claimed | str:
    """The claim statement; what happened instead when there is nothing to call:
    skipped | failed | waiting (for other calls' reservations to settle)."""
    lease_s = get_settings().lease_s
    with autocommit() as conn:
        for _ in range(CLAIM_ROUNDS):
            job = transitions.claim(conn, job_id, owner, lease_s)
            if isinstance(job, transitions.OverReserved):
                waiting = transitions.wait_for_budget(conn, job, owner)
                if waiting is None:
                    return "skipped"
                if waiting:
                    log.info("job %s: waits for the tenant's reservations to settle", job_id)
                    budget_waiters.mark(job.tenant_id)
                    return "waiting"
                continue  # room was freed since the claim: claim again
            if isinstance(job, transitions.Refused):
                metrics.JOBS_FINISHED.labels("failed", job.code).inc()
                if job.code == "budget_exceeded":
                    metrics.BUDGET_REJECTIONS.labels("worker").inc()
                if job.followers:
                    transitions.finish_followers(conn, job_id)
                log.info("job %s: refused (%s)", job_id, job.code)
                return "failed"
            return "skipped" if job is None else job
    # Queued and due: the sweeper publishes it again if no message does.
    return "skipped"


def _publish(job_ids: list[uuid.UUID]) -> None:
    """Jobs queued and due into the fair queue; the sweeper publishes any that is lost."""
    enqueue.publish_jobs(job_ids)
