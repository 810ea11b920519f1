"""GET /v1/jobs/{id}/events: the job's events as server-sent events (SPEC "Streaming")."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from aijobs.errors import InvalidRequest
from api import job_events
from api.deps import TenantDep
from api.routes import jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# A comment line this often keeps proxies from closing a quiet stream.
PING_S = 15


def _after(last_event_id: str | None) -> int | None:
    if last_event_id is None or last_event_id.strip() == "":
        return None
    try:
        after = int(last_event_id.strip())
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be an event id this API sent") from None
    if not 0 <= after < 2**62:
        raise InvalidRequest("Last-Event-ID must be an event id this API sent")
    return after


@router.get("/{job_id}/events", response_model=None)
async def job_events_stream(
    job_id: str,
    tenant: TenantDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> EventSourceResponse:
    """status, attempt, delta, reset, then done (the final job object) and the end of
    the stream; `Last-Event-ID` resumes after that event. A job that has ended answers
    `done` at once."""
    after = _after(last_event_id)
    job = await run_in_threadpool(jobs.read, tenant.id, job_id)  # 404 if not its
    found = uuid.UUID(job["id"])

    async def sent() -> AsyncIterator[ServerSentEvent]:
        async for event in job_events.follow(tenant.id, found, after):
            data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
            yield ServerSentEvent(data=data, event=event.type, id=str(event.id))

    return EventSourceResponse(sent(), ping=PING_S)
