"""Judge checks: after an output passes its other checks, each judge's call is made as
another attempt of the job (kind "judge"), reserved against the tenant's budget before
it is made and settled after, like any call; its cost is in the job's.

The call's attempt is recorded first (the job stays running under our lease); each
judge's claim takes the next attempt number, so the usual fencing holds. The last
judge's settle moves the job on by all the checks' results (worker/settle.py). A judge
whose call does not fit the budget fails the job budget_exceeded, keeping the output
(it does not wait for other calls' reservations: the output would have to wait with
it)."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import Connection

from aijobs import metrics
from aijobs.checks import judge
from aijobs.checks import run as checks
from aijobs.checks.schemas import JudgeCheck
from aijobs.jobs import transitions
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.structured import InvalidOutput, parse_output
from worker import settle
from worker.providers.base import Completion, ProviderError
from worker.providers.errors import map_exception
from worker.providers.registry import provider_for

log = logging.getLogger("aijobs.worker")


def judges_of(job: transitions.Claimed) -> list[JudgeCheck]:
    return judge.judge_checks(JobRequest.model_validate(job.request))


async def _judge_call(
    check: JudgeCheck, request: JobRequest, timeout_s: float
) -> tuple[Completion | None, checks.Result, ProviderError | None, int]:
    """The judge's call and its score as a check result; never raises."""
    started = time.monotonic()
    completion: Completion | None = None
    error: ProviderError | None = None
    outcome: checks.Result
    try:
        provider, name = provider_for(check.model)
        async with asyncio.timeout(timeout_s):
            completion = await provider.run(name, request, timeout_s)
        outcome = judge.result(check, parse_output(completion.content, judge.JUDGE_SCHEMA))
    except InvalidOutput:
        error = ProviderError(
            "invalid_output", "the judge's answer is not JSON {score, reason}", retryable=False
        )
        outcome = judge.failed(check, "its answer is not JSON {score, reason}")
    except TimeoutError:
        error = ProviderError(
            "provider_timeout", "the judge call took longer than timeout_s", retryable=True
        )
        outcome = judge.failed(check, "its call timed out")
    except Exception as exc:
        error = map_exception(exc)
        outcome = judge.failed(check, f"its call failed ({error.code})")
    return completion, outcome, error, int((time.monotonic() - started) * 1000)


async def judge_and_settle(
    job: transitions.Claimed,
    owner: str,
    completion: Completion,
    parsed: Any,
    latency_ms: int,
    results: list[checks.Result],
    judges: list[JudgeCheck],
) -> str:
    """Record the call, make each judge's call under the budget, and settle the job by
    all the results: succeeded | failed | retrying | skipped (the job left our hands)."""
    call, _ = settle.call_record(job, completion, None, latency_ms, results)
    settle.count_usage(job.model, call)
    what = f"job {job.id} attempt {job.attempt_no}"
    recorded = await asyncio.to_thread(
        settle.with_db_retries, what, lambda conn: transitions.record_call(conn, job, call)
    )
    if not recorded:
        return "skipped"
    current = job
    everything = list(results)
    spent = call.cost_usd  # the output's cost so far: a cache hit on it saves all of it
    for index, check in enumerate(judges):
        request = judge.judge_request(check, completion.content, job.timeout_s)
        reserve = judge.reservation(request)
        claimed = await asyncio.to_thread(
            settle.with_db_retries,
            what,
            partial(_claim, job=current, owner=owner, model=check.model, reserve=reserve),
        )
        if claimed == "gone":
            return "skipped"
        if isinstance(claimed, str):  # over_budget
            return await asyncio.to_thread(_refuse, current, owner, completion, parsed)
        judged, outcome, error, judge_ms = await _judge_call(check, request, job.timeout_s)
        everything.append(outcome)
        record, _ = settle.call_record(
            claimed, judged, error, judge_ms, [outcome], model=check.model
        )
        if index < len(judges) - 1:
            settle.count_usage(check.model, record)
            await asyncio.to_thread(
                settle.with_db_retries,
                what,
                partial(_record, job=claimed, call=record),
            )
            current = claimed
            spent += record.cost_usd
            continue
        failed = checks.action(everything) is not None
        job_error = (
            ProviderError("check_failed", checks.summary(everything), retryable=True)
            if failed
            else None
        )
        return await asyncio.to_thread(
            settle.record,
            claimed,
            owner,
            completion,
            parsed,
            job_error,
            latency_ms,
            everything,
            judged=record,
            judge_model=check.model,
            output_cost_usd=spent,
        )
    raise AssertionError("judges_of gave no judge")


def _claim(
    conn: Connection, *, job: transitions.Claimed, owner: str, model: str, reserve: Decimal
) -> transitions.Claimed | str:
    return transitions.claim_judge(conn, job, owner, model, reserve)


def _record(conn: Connection, *, job: transitions.Claimed, call: transitions.CallRecord) -> bool:
    return transitions.record_call(conn, job, call)


def _refuse(job: transitions.Claimed, owner: str, completion: Completion, parsed: Any) -> str:
    result = settle.result_of(completion, parsed)
    settled = settle.with_db_retries(
        f"job {job.id}", lambda conn: transitions.refuse_judge(conn, job, owner, result)
    )
    if settled.followers:
        settle.with_db_retries(
            f"job {job.id}", lambda conn: transitions.finish_followers(conn, job.id)
        )
    metrics.JOBS_FINISHED.labels("failed", "budget_exceeded").inc()
    metrics.BUDGET_REJECTIONS.labels("worker").inc()
    log.info("job %s: the judge call cannot fit the budget", job.id)
    return "failed"
