"""/admin/jobs: find jobs across tenants, read their attempts, re-run and cancel them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from aijobs.jobs import service as job_service
from aijobs.jobs import triage
from aijobs.jobs.view import row_of, view
from aijobs.tenants import audit
from api.admin_auth import require_admin
from api.deps import SessionDep
from api.publisher import publish_run

# Every route here is the admin API: the token check is the router's, not a route's.
router = APIRouter(prefix="/admin/jobs", tags=["admin"], dependencies=[Depends(require_admin)])


def actor(request: Request) -> str:
    host = request.client.host if request.client else "?"
    return f"api:{host} {request.headers.get('user-agent', '')}".strip()


def _job(row: dict[str, Any], tenant: str) -> dict[str, Any]:
    return {**view(row), "tenant": tenant, "tenant_id": str(row["tenant_id"])}


@router.get("")
def list_jobs(
    session: SessionDep,
    status: str | None = None,
    error_code: str | None = None,
    tenant: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    where = triage.JobFilter(status, error_code, tenant, model, since, until)
    rows, next_cursor, counts = triage.find(session, where, limit=limit, cursor=cursor)
    return {
        "data": [_job(row, name) for row, name in rows],
        "next_cursor": next_cursor,
        "counts_by_error_code": counts,
    }


class BulkRerun(BaseModel):
    """At least one filter field must be sent; `status`, when not sent, is failed."""

    model_config = ConfigDict(extra="forbid")

    status: str | None = None
    error_code: str | None = None
    tenant: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False
    ids_limit: int = Field(default=1000, ge=0, le=triage.BULK_CAP)


@router.post("/rerun")
def rerun_many(body: BulkRerun, session: SessionDep, request: Request) -> dict[str, Any]:
    """Re-run every finished job the filter matches (capped), or with dry_run only count
    them. Answers how many were re-queued, answered at once (cache, a live identical
    job) and skipped, and why. No filter at all is a 422, not "everything"."""
    fields = set(triage.FILTER_FIELDS)
    where = triage.bulk_filter(body.model_dump(include=fields, exclude_unset=True))
    filters = {**body.model_dump(mode="json", include=fields), "status": where.status}
    ids = triage.select_for_rerun(session, where)
    filters = body.model_dump(mode="json", exclude={"dry_run", "ids_limit"})
    if body.dry_run:
        return {"count": len(ids), "ids": [str(i) for i in ids[: body.ids_limit]], "dry_run": True}
    outcome = triage.rerun(
        ids,
        actor=actor(request),
        action="jobs.rerun",
        detail={"filter": filters},
        publish=publish_run,
    )
    done = [*outcome.requeued, *outcome.answered]
    return {
        "count": outcome.count,
        "ids": [str(i) for i in done[: body.ids_limit]],
        "requeued": len(outcome.requeued),
        "answered_at_once": len(outcome.answered),
        "skipped": outcome.skipped,
        "dry_run": False,
    }


@router.get("/{job_id}")
def get_job(job_id: str, session: SessionDep) -> dict[str, Any]:
    job = triage.get(session, job_id)
    return {**view(row_of(job)), "tenant_id": str(job.tenant_id)}


@router.get("/{job_id}/attempts")
def job_attempts(job_id: str, session: SessionDep) -> dict[str, Any]:
    return {"data": triage.attempts(session, job_id)}


@router.post("/{job_id}/rerun", status_code=202)
def rerun_job(
    job_id: str, session: SessionDep, request: Request, response: Response
) -> dict[str, Any]:
    job = triage.get(session, job_id)
    triage.rerun(
        [job.id],
        actor=actor(request),
        action="job.rerun",
        detail={"job_id": str(job.id)},
        publish=publish_run,
        single=True,
    )
    response.headers["Location"] = f"/admin/jobs/{job.id}"
    session.refresh(job)
    return {**view(row_of(job)), "tenant_id": str(job.tenant_id)}


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    job = triage.get(session, job_id)
    cancelled = job_service.cancel(session, job.tenant_id, str(job.id))
    audit.record(session, "job.cancel", actor(request), job_id=str(job.id))
    session.commit()
    if cancelled.heir is not None:
        publish_run(uuid.UUID(str(cancelled.heir)))
    return view(cancelled.row)
