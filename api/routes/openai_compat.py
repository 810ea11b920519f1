"""The OpenAI-compatible front door: POST /v1/chat/completions and /v1/embeddings in
OpenAI's shapes, each call an ordinary job (submitted as POST /v1/jobs does, then waited
for, or with `stream: true` followed through its events as SSE chunks). Errors on these
routes use OpenAI's error object (the route class below); /v1/responses is beside it
(api/routes/responses.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sse_starlette import EventSourceResponse, JSONServerSentEvent, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from aijobs.errors import AppError
from aijobs.jobs import openai_shapes
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.transitions import TERMINAL
from aijobs.tenants.service import TenantInfo
from api import job_events
from api.deps import AuthedTenantDep
from api.problems import CODES_BY_STATUS
from api.routes import jobs

log = logging.getLogger(__name__)

MAX_WAIT_S = 600.0
# Beyond the attempts' own time: queueing, backoff between attempts, the settle.
WAIT_SLACK_S = 60.0
JOB_ID_HEADER = "x-aijobs-job-id"
# OpenAI's streams end their lines with a bare newline (sse-starlette's default is CRLF).
SSE_SEP = "\n"


def _openai_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    return JSONResponse(
        openai_shapes.error_body(status, code, message, param), status_code=status, headers=headers
    )


def _rendered(exc: Exception) -> JSONResponse:
    """An error raised on these routes, as OpenAI's error object with aijobs' code."""
    if isinstance(exc, AppError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if "retry_after_s" in exc.extra:
            headers = {"Retry-After": str(exc.extra["retry_after_s"])}
        return _openai_error(exc.status, exc.code, exc.detail, headers, exc.extra.get("field"))
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return _openai_error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")
    if isinstance(exc, StarletteHTTPException):
        code = CODES_BY_STATUS.get(exc.status_code, "invalid_request")
        headers = dict(exc.headers) if exc.headers else None
        return _openai_error(exc.status_code, code, str(exc.detail), headers)
    log.exception("openai_compat.unhandled")
    return _openai_error(500, "internal", "an unexpected error occurred")


class OpenAIErrorRoute(APIRoute):
    """Renders every error of its routes (auth, validation, the handler's) in OpenAI's
    shape; the rest of the API keeps problem+json (api/problems.py)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return _rendered(exc)

        return handle


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIErrorRoute)

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


def _wait_bound(request: JobRequest) -> float:
    """Every attempt of every model at its timeout, plus slack; at most MAX_WAIT_S."""
    attempts = request.max_attempts * len(request.models())
    return min(request.timeout_s * attempts + WAIT_SLACK_S, MAX_WAIT_S)


async def run(
    http: Request, tenant: TenantInfo, request: JobRequest, key: str | None
) -> dict[str, Any]:
    """Submit, then poll the job row until it ends (no connection held while waiting)."""
    job = await run_in_threadpool(jobs.accept, request, tenant, key)
    deadline = time.monotonic() + _wait_bound(request)
    pause = 0.05
    while job["status"] not in TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 1.5, 0.5)
        if await http.is_disconnected():
            break  # the job goes on; nobody is left to answer
        job = await run_in_threadpool(jobs.read, tenant.id, job["id"])
    return job


def answer(job: dict[str, Any], success: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    """The waited job's answer: `success(job)` when it succeeded, else OpenAI's error."""
    headers = {JOB_ID_HEADER: job["id"]}
    if job["status"] == "succeeded":
        return JSONResponse(success(job), headers=headers)
    # The job retried (and fell back) already: the SDK must not submit it again.
    headers["x-should-retry"] = "false"
    if job["status"] not in TERMINAL:
        message = f"job {job['id']} has not ended yet; read it at /v1/jobs/{job['id']}"
        body = openai_shapes.error_body(504, "wait_timeout", message)
        return JSONResponse(body, status_code=504, headers=headers)
    status, body = openai_shapes.job_error(job)
    return JSONResponse(body, status_code=status, headers=headers)


def sse_data(body: dict[str, Any], event: str | None = None) -> ServerSentEvent:
    """One SSE event as OpenAI writes them: `data: <one line of JSON>` (after
    `event: <type>` on the Responses streams), lines ended by a bare newline."""
    return JSONServerSentEvent(body, event=event, sep=SSE_SEP)


def _stream_error(code: str, message: str) -> ServerSentEvent:
    return sse_data(openai_shapes.error_body(500, code, message))


async def _chat_chunks(
    tenant_id: uuid.UUID, job: dict[str, Any], with_usage: bool
) -> AsyncIterator[ServerSentEvent]:
    """A streamed chat job as chat.completion.chunk events: its deltas as they come
    (the role in the first), then the finish reason, the usage if asked, [DONE]. A job
    that streamed nothing (a cache hit, a deduplicated job) sends its result as one
    chunk. An attempt that fails after its text was sent cannot take it back: the
    stream ends with an error event (the SDK raises APIError), and the job goes on."""
    model, streamed = job["model"], ""

    def chunk(delta: dict[str, str], reason: str | None = None) -> ServerSentEvent:
        if not streamed and "content" in delta:
            delta = {"role": "assistant", **delta}
        return sse_data(openai_shapes.chat_chunk(job, model, delta, reason, with_usage))

    try:
        async for event in job_events.follow(tenant_id, uuid.UUID(job["id"]), None):
            if event.type == "attempt":
                model = str(event.data.get("model") or model)
            elif event.type == "delta" and event.data.get("text"):
                yield chunk({"content": event.data["text"]})
                streamed += event.data["text"]
            elif event.type == "reset" and streamed:
                code = str(event.data.get("code") or "internal")
                yield _stream_error(
                    code,
                    f"the attempt failed mid-stream ({code}) after part of its text was sent;"
                    f" the job {job['id']} is retrying: read its result at /v1/jobs/{job['id']}",
                )
                return
            elif event.type == "done":
                final = event.data
                if final["status"] != "succeeded":
                    yield sse_data(openai_shapes.job_error(final)[1])
                    return
                text = (final["result"] or {}).get("content") or ""
                if not text.startswith(streamed):
                    yield _stream_error(
                        "internal", f"job {job['id']}: its result is not the text streamed"
                    )
                    return
                model = openai_shapes.answered_by(final)
                if text[len(streamed) :] or not streamed:
                    yield chunk({"content": text[len(streamed) :]})
                    streamed = text
                yield chunk({}, openai_shapes.finish_reason(final))
                if with_usage:
                    yield sse_data(openai_shapes.chat_usage_chunk(final))
                yield ServerSentEvent("[DONE]", sep=SSE_SEP)
                return
    except Exception:
        log.exception("openai_compat.stream_failed", extra={"job_id": job["id"]})
        yield _stream_error(
            "internal", f"the stream of job {job['id']} broke off; read it at /v1/jobs/{job['id']}"
        )


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    http: Request,
    body: Annotated[dict[str, Any], Body()],
    tenant: AuthedTenantDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    request = openai_shapes.chat_job_request(body)
    if request.stream:
        # Refusals (validation, rpm, budget) are still ordinary errors: the submit
        # runs before the stream starts.
        job = await run_in_threadpool(jobs.accept, request, tenant, idempotency_key)
        chunks = _chat_chunks(tenant.id, job, openai_shapes.include_usage(body))
        return EventSourceResponse(chunks, headers={JOB_ID_HEADER: job["id"]}, sep=SSE_SEP)
    job = await run(http, tenant, request, idempotency_key)
    return answer(job, openai_shapes.chat_completion)


@router.post("/embeddings", response_model=None)
async def embeddings(
    http: Request,
    body: Annotated[dict[str, Any], Body()],
    tenant: AuthedTenantDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    request = openai_shapes.embedding_job_request(body)
    encoding = body.get("encoding_format") or "float"
    job = await run(http, tenant, request, idempotency_key)
    return answer(job, lambda done: openai_shapes.embedding_list(done, encoding))
