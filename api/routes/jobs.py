"""/v1/jobs: submit, read (with long-poll), list, cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from aijobs import jobs
from aijobs.db import session_scope
from aijobs.schemas import JobRequest
from api.deps import SessionDep, TenantDep
from api.publisher import publish_run

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 30.0


@router.post("", status_code=202)
def submit_job(
    body: JobRequest, tenant: TenantDep, session: SessionDep, response: Response
) -> dict[str, Any]:
    job = jobs.submit(session, tenant.id, body)
    view = jobs.view(job)
    session.commit()  # enqueue only what is durable
    publish_run(job.id)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return view


def _read(tenant_id: uuid.UUID, job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        return jobs.view(jobs.get(session, tenant_id, job_id))


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
    view = await run_in_threadpool(_read, tenant.id, job_id)
    while view["status"] not in jobs.TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 1.5, 0.5)
        view = await run_in_threadpool(_read, tenant.id, job_id)
    if view["status"] not in jobs.TERMINAL:
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
    rows, next_cursor = jobs.list_jobs(
        session, tenant.id, status=status, limit=limit, cursor=cursor
    )
    return {"data": [jobs.view(job) for job in rows], "next_cursor": next_cursor}


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, tenant: TenantDep, session: SessionDep) -> dict[str, Any]:
    return jobs.view(jobs.cancel(session, tenant.id, job_id))
