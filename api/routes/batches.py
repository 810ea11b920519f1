"""/v1/batches: submit (JSON or NDJSON), read, list, results (NDJSON), cancel.

The body is read here, not by FastAPI: an NDJSON body is validated chunk by chunk as it
arrives (never held whole), a JSON one parsed once. After the commit, the first
PUBLISH_NOW queued jobs are published from a background task once the response is sent;
the sweeper publishes the rest (aijobs/batches/transitions.py)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from aijobs.batches import intake, results, service
from aijobs.batches.schemas import BatchOptions
from aijobs.db import autocommit, session_scope
from aijobs.errors import InvalidRequest
from aijobs.tenants.service import TenantInfo
from api import rate_limit
from api.deps import AuthedTenantDep, SessionDep, TenantDep
from api.publisher import publish_run, publish_runs

router = APIRouter(prefix="/v1/batches", tags=["batches"])

NDJSON = "application/x-ndjson"


def _publish(job_ids: list[Any]) -> None:
    publish_runs([uuid.UUID(str(job_id)) for job_id in job_ids])


async def _read_ndjson(
    request: Request, tenant: TenantInfo, hasher: Any, tier: str
) -> intake.Intake:
    reader = intake.Intake(tenant.id, tier)
    pending = b""
    async for chunk in request.stream():
        hasher.update(chunk)
        *complete, pending = (pending + chunk).split(b"\n")
        if complete:
            await run_in_threadpool(_feed, reader, complete)
    if pending.strip():
        await run_in_threadpool(_feed, reader, [pending])
    return reader


def _feed(reader: intake.Intake, raw_lines: list[bytes]) -> None:
    with autocommit() as conn:  # prompts are read (versions are immutable)
        reader.feed_ndjson(conn, raw_lines)


def _feed_values(reader: intake.Intake, values: list[Any]) -> None:
    with autocommit() as conn:
        reader.feed(conn, values)


@router.post("", status_code=202, response_model=None)
async def submit_batch(
    request: Request,
    tenant: AuthedTenantDep,
    background: BackgroundTasks,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
    webhook_url: Annotated[str | None, Query(max_length=2000)] = None,
    tier: str | None = None,
) -> JSONResponse:
    """202 with the batch; all or nothing: any invalid line refuses the whole batch
    (422, `errors` by index). A repeated Idempotency-Key (same body) answers the batch
    it made first, before the rate limit or the budget can refuse it."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    hasher = hashlib.sha256(f"{content_type}\n{request.url.query}\n".encode())
    if content_type == NDJSON:
        try:
            options = BatchOptions.model_validate(
                {"webhook_url": webhook_url, **({"tier": tier} if tier else {})}
            )
        except ValidationError as exc:
            raise InvalidRequest(f"invalid batch options: {exc}") from exc
        service.check_options(options)
        reader = await _read_ndjson(request, tenant, hasher, options.tier)
    else:
        if webhook_url is not None or tier is not None:
            raise InvalidRequest("with a JSON body, webhook_url and tier go in the body")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
        hasher.update(body)
        options, jobs = intake.json_lines(body)
        del body
        service.check_options(options)
        reader = intake.Intake(tenant.id, options.tier)
        await run_in_threadpool(_feed_values, reader, jobs)
    return await run_in_threadpool(
        _submit, tenant, options, reader, idempotency_key, hasher.hexdigest(), background
    )


def _submit(
    tenant: TenantInfo,
    options: BatchOptions,
    reader: intake.Intake,
    idempotency_key: str | None,
    body_hash: str,
    background: BackgroundTasks,
) -> JSONResponse:
    submitted = None
    if idempotency_key is not None:
        with autocommit() as conn:
            submitted = service.replay(conn, tenant.id, idempotency_key, body_hash)
    if submitted is None:
        lines = reader.finish()
        if tenant.rpm and not lines.errors:
            rate_limit.check_submissions(tenant.id, tenant.rpm, jobs=len(lines.rows))
        with session_scope() as session:
            submitted = service.submit(
                session,
                tenant.id,
                options,
                lines,
                idempotency_key=idempotency_key,
                body_hash=body_hash,
                budgeted=tenant.daily_budget_usd is not None
                or tenant.monthly_budget_usd is not None,
            )
    # Committed: publish what is durable, after the response is sent.
    if submitted.publish:
        background.add_task(_publish, submitted.publish)
    batch = submitted.batch
    headers = {"Location": f"/v1/batches/{batch['id']}"}
    return JSONResponse(batch, status_code=202, headers=headers, background=background)


@router.get("")
def list_batches(
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    data, next_cursor = service.list_batches(
        session.connection(), tenant.id, limit=limit, cursor=cursor
    )
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{batch_id}")
def get_batch(batch_id: str, tenant: TenantDep, session: SessionDep) -> dict[str, Any]:
    return service.get(session.connection(), tenant.id, batch_id)


@router.get("/{batch_id}/results", response_model=None)
def batch_results(batch_id: str, tenant: TenantDep, session: SessionDep) -> StreamingResponse:
    """NDJSON, one line per job in input order, streamed from a server-side cursor."""
    parsed = service.resolve(session.connection(), tenant.id, batch_id)
    return StreamingResponse(results.lines(parsed), media_type=NDJSON)


@router.post("/{batch_id}/cancel")
def cancel_batch(batch_id: str, tenant: TenantDep, session: SessionDep) -> dict[str, Any]:
    cancelled = service.cancel(session.connection(), tenant.id, batch_id)
    session.commit()
    for heir in cancelled.heirs:
        publish_run(heir)
    return cancelled.batch
