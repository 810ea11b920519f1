"""OpenAI's Responses API on aijobs: POST /v1/responses (each Response one chat job,
`resp_` + the job's id), GET /v1/responses/{id} (read, or its events again with
?stream=true&starting_after=N), POST /v1/responses/{id}/cancel. Errors in OpenAI's shape
(the front door's route class)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from aijobs.db import session_scope
from aijobs.jobs import responses_service, responses_shapes
from aijobs.jobs.responses_events import ResponseEvents
from aijobs.jobs.transitions import TERMINAL
from aijobs.tenants.service import TenantInfo
from api import job_events
from api.deps import AuthedTenantDep, TenantDep
from api.routes import jobs, openai_compat
from api.routes.openai_compat import JOB_ID_HEADER, SSE_SEP, IdempotencyKey, OpenAIErrorRoute

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIErrorRoute)


def _load(tenant_id: uuid.UUID, job_id: str) -> responses_service.Loaded:
    with session_scope() as session:
        return responses_service.load(session, tenant_id, job_id)


def _cache_tokens(job_id: str) -> tuple[int, int]:
    with session_scope() as session:
        return responses_service.cache_tokens(session, job_id)


def _headers(job_id: str) -> dict[str, str]:
    return {JOB_ID_HEADER: job_id}


async def _events(
    tenant_id: uuid.UUID,
    job: dict[str, Any],
    request: dict[str, Any],
    background: bool | None,
    starting_after: int,
) -> AsyncIterator[ServerSentEvent]:
    """The Response's events (aijobs/jobs/responses_events.py) from the job's first
    event, sending those numbered above `starting_after`. A broken stream is cut, not
    ended: the client sees the connection drop and resumes where it was."""
    derived = ResponseEvents(responses_shapes.start(job, request, background))
    try:
        for out in derived.opening():
            if out["sequence_number"] > starting_after:
                yield openai_compat.sse_data(out, out["type"])
        async for event in job_events.follow(tenant_id, uuid.UUID(job["id"]), 0):
            if event.type == "done":
                cached = await run_in_threadpool(_cache_tokens, job["id"])
                final = responses_shapes.response_object(event.data, request, background, *cached)
                made = derived.finish(final)
            else:
                made = derived.feed(event)
            for out in made:
                if out["sequence_number"] > starting_after:
                    yield openai_compat.sse_data(out, out["type"])
            if event.type == "done":
                return
    except Exception:
        log.exception("responses.stream_failed", extra={"job_id": job["id"]})
        raise


def _stream(
    tenant: TenantInfo,
    job: dict[str, Any],
    request: dict[str, Any],
    background: bool | None,
    starting_after: int = -1,
) -> EventSourceResponse:
    events = _events(tenant.id, job, request, background, starting_after)
    return EventSourceResponse(events, headers=_headers(job["id"]), sep=SSE_SEP)


@router.post("/responses", response_model=None)
async def create_response(
    http: Request,
    body: Annotated[dict[str, Any], Body()],
    tenant: AuthedTenantDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """One chat job. `stream`: its events as they come; `background`: the Response at
    once (queued); neither: the Response once the job has ended (as chat waits)."""
    asked = responses_shapes.response_request(body)
    request = responses_shapes.stored(asked.job)
    if asked.stream:
        job = await run_in_threadpool(jobs.accept, asked.job, tenant, idempotency_key)
        return _stream(tenant, job, request, asked.background)
    if asked.background:
        job = await run_in_threadpool(jobs.accept, asked.job, tenant, idempotency_key)
    else:
        job = await openai_compat.run(http, tenant, asked.job, idempotency_key)
        if job["status"] != "succeeded":
            return openai_compat.answer(job, lambda done: done)  # OpenAI's error
    ended = job["status"] in TERMINAL
    cached = await run_in_threadpool(_cache_tokens, job["id"]) if ended else (0, 0)
    response = responses_shapes.response_object(job, request, asked.background, *cached)
    return JSONResponse(response, headers=_headers(job["id"]))


@router.get("/responses/{response_id}", response_model=None)
async def get_response(
    response_id: str,
    tenant: TenantDep,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=0, lt=2**62)] = None,
) -> Response:
    """The Response now; with stream=true its events from the start, or those after
    `starting_after` (the last sequence_number the client saw)."""
    job_id = responses_shapes.job_id_of(response_id)
    loaded = await run_in_threadpool(_load, tenant.id, job_id)
    if stream:
        after = -1 if starting_after is None else starting_after
        return _stream(tenant, loaded.job, loaded.request, None, after)
    return JSONResponse(loaded.response(), headers=_headers(job_id))


def _cancel(tenant: TenantInfo, job_id: str) -> responses_service.Loaded:
    _load(tenant.id, job_id)  # 404 unless a chat job of the tenant's
    jobs.cancel(tenant.id, job_id)  # as POST /v1/jobs/{id}/cancel does
    return _load(tenant.id, job_id)


@router.post("/responses/{response_id}/cancel", response_model=None)
async def cancel_response(response_id: str, tenant: TenantDep) -> Response:
    """The job cancelled (queued or running); a job that has ended is a 409."""
    job_id = responses_shapes.job_id_of(response_id)
    loaded = await run_in_threadpool(_cancel, tenant, job_id)
    return JSONResponse(loaded.response(), headers=_headers(job_id))
