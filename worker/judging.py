"""Judge checks: after an output passes its other checks, each judge's call is made as
another attempt of the job (kind "judge"), reserved against the tenant's budget before
it is made and settled after, like any call; its cost is in the job's.

The call's attempt is recorded first (the job stays running under our lease); each
judge's claim takes the next attempt number, so the usual fencing holds. The last
judge's settle moves the job on by all the checks' results (worker/settle.py).

A judge's call follows the budget rules of any call. It is reserved when it is about to
be made, at its exact bound: the rubric and the output as they are then (their UTF-8
bytes) and the judge's output cap. One that cannot fit even alone fails the job
budget_exceeded, keeping the output. One that fits alone but not beside the calls in
flight waits: the job goes back to queued, waiting for budget, with the judge pending
(jobs.judge_pending, migration 0014: the output, the checks so far, which judge is next
and its reservation); the settles that free room wake it (as they wake waiting calls),
and its next claim reserves and makes that judge's call, never the job's own call again.

Why this design, and not reserving the judges with the job's call at its claim (which
needs no migration): the judge's input holds the output, and what bounds the output is
its cap in tokens, while a reservation counts input by bytes (a token covers at least
one byte: that is what makes a bound exact). A token has no upper size in bytes (each
provider's tokenizer differs, an OpenAI-compatible server reports what it likes), so
nothing known at the claim bounds the judge's input exactly; a guessed bytes-per-token
factor would either overspend or reserve so much that jobs that fit are refused. A
pending judge is reserved once the output is known, so exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
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
from aijobs.storable import storable_text
from worker import budget_waiters, settle
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


@dataclass(frozen=True)
class _Output:
    """The output the judges score, and what is known of it so far: kept in the job
    (judge_pending) while a judge waits for budget."""

    completion: Completion
    parsed: Any
    latency_ms: int
    results: list[checks.Result]  # the checks run on it so far, judges' included
    spent: Decimal  # what its call and its judges so far cost

    def pending(self, next_judge: int, model: str, reserve: Decimal) -> dict[str, Any]:
        return {
            "next": next_judge,
            "model": model,
            "reserve": str(reserve),
            "result": settle.result_of(self.completion, self.parsed),
            "checks": [{**r.as_json(), "on_fail": r.on_fail} for r in self.results],
            "spent": str(self.spent),
            "latency_ms": self.latency_ms,
        }

    @classmethod
    def of(cls, pending: dict[str, Any]) -> _Output:
        result = pending["result"]
        completion = Completion(
            content=result["content"],
            finish_reason=result.get("finish_reason") or "stop",
            input_tokens=0,
            output_tokens=0,
            embeddings=result.get("embeddings"),
        )
        results = [
            checks.Result(c["type"], c["passed"], c["detail"], c["on_fail"])
            for c in pending["checks"]
        ]
        return cls(
            completion,
            result.get("parsed"),
            int(pending["latency_ms"]),
            results,
            Decimal(pending["spent"]),
        )


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
    all the results: succeeded | failed | retrying | waiting | due (a judge waits for
    budget) | skipped (the job left our hands)."""
    call, _ = settle.call_record(job, completion, None, latency_ms, results)
    settle.count_usage(job.model, call)
    what = f"job {job.id} attempt {job.attempt_no}"
    recorded = await asyncio.to_thread(
        settle.with_db_retries, what, lambda conn: transitions.record_call(conn, job, call)
    )
    if not recorded:
        return "skipped"
    # The judges score the output as it is stored (a pending judge reads it back from the
    # job), so a judge's reservation is the same before and after a wait.
    stored = dataclasses.replace(completion, content=storable_text(completion.content))
    output = _Output(stored, parsed, latency_ms, list(results), call.cost_usd)
    return await _judge(job, owner, output, judges, 0, None)


async def resume(job: transitions.Claimed, owner: str) -> str:
    """The claim of a job whose judge waited for budget: that judge's call (claimed and
    reserved already), then the judges after it, then the settle."""
    assert job.judge_pending is not None
    pending = job.judge_pending
    output = _Output.of(pending)
    return await _judge(job, owner, output, judges_of(job), int(pending["next"]), job)


async def _judge(
    job: transitions.Claimed,
    owner: str,
    output: _Output,
    judges: list[JudgeCheck],
    first: int,
    claimed: transitions.Claimed | None,
) -> str:
    """Judges `first`.. of the output; `claimed`: the first one's call, claimed already."""
    what = f"job {job.id}"
    current = job
    everything = list(output.results)
    spent = output.spent  # the output's cost so far: a cache hit on it saves all of it
    for index in range(first, len(judges)):
        check = judges[index]
        request = judge.judge_request(check, output.completion.content, job.timeout_s)
        reserve = judge.reservation(request)
        if claimed is None:
            got = await asyncio.to_thread(
                settle.with_db_retries,
                what,
                partial(_claim, job=current, owner=owner, model=check.model, reserve=reserve),
            )
            if got == "gone":
                return "skipped"
            if got == "over_reserved":
                so_far = dataclasses.replace(output, results=everything, spent=spent)
                pending = so_far.pending(index, check.model, reserve)
                return await asyncio.to_thread(_wait, current, owner, pending, reserve)
            if isinstance(got, str):  # over_budget
                return await asyncio.to_thread(
                    _refuse, current, owner, output.completion, output.parsed
                )
            claimed = got
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
            current, claimed = claimed, None
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
            output.completion,
            output.parsed,
            job_error,
            output.latency_ms,
            everything,
            judged=record,
            judge_model=check.model,
            output_cost_usd=spent,
        )
    raise AssertionError("judges_of gave no judge")


def _wait(job: transitions.Claimed, owner: str, pending: dict[str, Any], reserve: Decimal) -> str:
    waiting = settle.with_db_retries(
        f"job {job.id}", lambda conn: transitions.wait_judge(conn, job, owner, pending, reserve)
    )
    if waiting is None:
        return "skipped"
    log.info("job %s: its judge waits for the tenant's reservations to settle", job.id)
    if waiting:
        budget_waiters.mark(job.tenant_id)
    return "waiting" if waiting else "due"


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
