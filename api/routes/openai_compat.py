"""The OpenAI-compatible front door: POST /v1/chat/completions and /v1/embeddings in
OpenAI's shapes, each call an ordinary job (submitted as POST /v1/jobs does, then waited
for). Errors on these routes use OpenAI's error object (the route class below)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from aijobs.db import session_scope
from aijobs.errors import AppError
from aijobs.jobs import openai_shapes
from aijobs.jobs import service as job_service
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.transitions import TERMINAL
from aijobs.jobs.view import view
from aijobs.tenants.service import TenantInfo
from api.deps import AuthedTenantDep
from api.problems import CODES_BY_STATUS
from api.routes import jobs

log = logging.getLogger(__name__)

MAX_WAIT_S = 600.0
# Beyond the attempts' own time: queueing, backoff between attempts, the settle.
WAIT_SLACK_S = 60.0
JOB_ID_HEADER = "x-aijobs-job-id"


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


def _submit(tenant: TenantInfo, request: JobRequest, key: str | None) -> dict[str, Any]:
    """The job, submitted exactly as POST /v1/jobs submits one (replay, rpm, budget,
    cache and in-flight dedup, publish after commit, metrics)."""
    return jobs.accept(request, tenant, key)


def _read(tenant_id: uuid.UUID, job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        return view(job_service.get_row(session, tenant_id, job_id))


def _wait_bound(request: JobRequest) -> float:
    """Every attempt of every model at its timeout, plus slack; at most MAX_WAIT_S."""
    attempts = request.max_attempts * len(request.models())
    return min(request.timeout_s * attempts + WAIT_SLACK_S, MAX_WAIT_S)


async def _run(
    http: Request, tenant: TenantInfo, request: JobRequest, key: str | None
) -> dict[str, Any]:
    """Submit, then poll the job row until it ends (no connection held while waiting)."""
    job = await run_in_threadpool(_submit, tenant, request, key)
    deadline = time.monotonic() + _wait_bound(request)
    pause = 0.05
    while job["status"] not in TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 1.5, 0.5)
        if await http.is_disconnected():
            break  # the job goes on; nobody is left to answer
        job = await run_in_threadpool(_read, tenant.id, job["id"])
    return job


def _answer(job: dict[str, Any], success: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
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


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    http: Request,
    body: Annotated[dict[str, Any], Body()],
    tenant: AuthedTenantDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    request = openai_shapes.chat_job_request(body)
    job = await _run(http, tenant, request, idempotency_key)
    return _answer(job, openai_shapes.chat_completion)


@router.post("/embeddings", response_model=None)
async def embeddings(
    http: Request,
    body: Annotated[dict[str, Any], Body()],
    tenant: AuthedTenantDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    request = openai_shapes.embedding_job_request(body)
    encoding = body.get("encoding_format") or "float"
    job = await _run(http, tenant, request, idempotency_key)
    return _answer(job, lambda done: openai_shapes.embedding_list(done, encoding))
