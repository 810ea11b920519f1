"""/v1/jobs: submit, read (with long-poll), list, cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from aijobs import metrics
from aijobs.db import session_scope
from aijobs.jobs import service as job_service
from aijobs.jobs import submission
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.transitions import TERMINAL
from aijobs.jobs.view import view
from aijobs.scheduling import fair_queue
from aijobs.streaming import writer as events
from aijobs.tenants.service import TenantInfo
from api import rate_limit
from api.deps import AuthedTenantDep, SessionDep, TenantDep
from api.publisher import publish_entry, publish_run

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 30.0


@router.post("", status_code=202, response_model=None)
def submit_job(
    body: JobRequest,
    tenant: AuthedTenantDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> JSONResponse:
    """202 for every accepted request, so clients keep one code path: a cache hit is
    already succeeded, a repeated Idempotency-Key returns the job it made first.

    A replay is answered first: neither the rate limit, the budget nor the price table
    may refuse the job a key already made. Only then does the request count against
    the tenant's rpm (submissions only). The hot route: each unit of work is opened
    here, in its one thread-pool hop, and the job view (JSON-ready already) is sent as
    is, without FastAPI's re-encoding."""
    job = accept(body, tenant, idempotency_key)
    headers = {"Location": f"/v1/jobs/{job['id']}"}
    return JSONResponse(job, status_code=202, headers=headers)


def accept(body: JobRequest, tenant: TenantInfo, idempotency_key: str | None) -> dict[str, Any]:
    """Submit a job as POST /v1/jobs does (replay, rpm, budget, cache and in-flight
    dedup, publish after the commit, metrics): the job's view. The front door's routes
    (api/routes/openai_compat.py) accept their jobs here too."""
    submitted = None
    if idempotency_key is not None:
        with session_scope() as session:
            submitted = submission.replay(session, tenant.id, idempotency_key, body)
    if submitted is None:
        if tenant.rpm:
            rate_limit.check_submissions(tenant.id, tenant.rpm)
        budgeted = tenant.daily_budget_usd is not None or tenant.monthly_budget_usd is not None
        if idempotency_key is None:
            submitted = submission.submit_new(
                tenant.id, body, refuse_unconfigured=True, budgeted=budgeted
            )
        else:
            with session_scope() as session:
                submitted = submission.submit(
                    session,
                    tenant.id,
                    body,
                    idempotency_key=idempotency_key,
                    refuse_unconfigured=True,
                    budgeted=budgeted,
                )
    # Committed: enqueue only what is durable.
    job_id = submitted.row["id"]
    if submitted.publish:
        row = submitted.row
        publish_entry(
            fair_queue.Entry(job_id, tenant.id, row["priority"], tenant.weight, tenant.max_inflight)
        )
    _count(submitted)
    return view(submitted.row)


def _count(submitted: submission.Submitted) -> None:
    row = submitted.row
    if row["cache_hit"]:
        outcome = "cache_hit"
        metrics.CACHE_HITS.labels(row["model"]).inc()
        metrics.CACHE_SAVED.labels(row["model"]).inc(float(row["saved_usd"]))
    elif submitted.publish:
        outcome = "queued"
    else:
        outcome = "follower" if row["leader_id"] else "replayed"
    metrics.JOBS_SUBMITTED.labels(row["model"], outcome).inc()


def read(tenant_id: uuid.UUID, job_id: uuid.UUID | str) -> dict[str, Any]:
    """The job object (GET /v1/jobs/{id}) in a unit of work of its own; 404 when it is
    not the tenant's. The front door and the job events read jobs here too."""
    with session_scope() as session:
        return view(job_service.get_row(session, tenant_id, str(job_id)))


@router.get("/{job_id}")
async def get_job(
    job_id: str,
    tenant: TenantDep,
    response: Response,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0,
) -> dict[str, Any]:
    """With `wait`, hold the request until the job is terminal or `wait` seconds pass.
    The wait holds no database connection: each look is a short read."""
    deadline = time.monotonic() + wait
    pause = 0.05
    view = await run_in_threadpool(read, tenant.id, job_id)
    while view["status"] not in TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 1.5, 0.5)
        view = await run_in_threadpool(read, tenant.id, job_id)
    if view["status"] not in TERMINAL:
        response.headers["Retry-After"] = "1"
    return view


@router.get("")
def list_jobs(
    tenant: TenantDep,
    session: SessionDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    rows, next_cursor = job_service.list_jobs(
        session, tenant.id, status=status, limit=limit, cursor=cursor
    )
    return {"data": [view(row) for row in rows], "next_cursor": next_cursor}


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, tenant: TenantDep) -> dict[str, Any]:
    return cancel(tenant.id, job_id)


def cancel(tenant_id: uuid.UUID, job_id: str) -> dict[str, Any]:
    """Cancel the job as POST /v1/jobs/{id}/cancel does (its followers told, an heir
    published): its view. The front door's cancel comes here too."""
    with session_scope() as session:
        cancelled = job_service.cancel(session, tenant_id, job_id)
        session.commit()
    metrics.JOBS_FINISHED.labels("cancelled", "cancelled").inc()
    events.ended(uuid.UUID(str(cancelled.row["id"])), "cancelled")
    if cancelled.heir is not None:
        publish_run(cancelled.heir)
    return view(cancelled.row)
