"""The asynchronous client of aijobs' HTTP API, on httpx.AsyncClient: the same methods
as the sync Client, awaited."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import SSEError, aconnect_sse
from pydantic import BaseModel

from aijobs.client import _events, _http
from aijobs.client.errors import ServerError, from_response
from aijobs.client.models import (
    Batch,
    BatchPage,
    BatchResult,
    DoneEvent,
    Feedback,
    Job,
    JobEvent,
    JobPage,
)

if TYPE_CHECKING:
    from aijobs.jobs.schemas import JobRequest


class AsyncClient:
    """`AsyncClient(base_url, api_key)`; pass `http_client` to bring your own
    httpx.AsyncClient: it is then yours to close."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = _http.DEFAULT_TIMEOUT_S,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._owned = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: _http.Call) -> Any:
        response = await self._http.request(
            call.method,
            self.base_url + call.path,
            **_http.request_kwargs(call, self._api_key, self._timeout),
        )
        return _http.checked(response)

    # Jobs

    async def submit(
        self, job: Mapping[str, Any] | JobRequest, idempotency_key: str | None = None
    ) -> Job:
        """POST /v1/jobs: the job as accepted (queued, or already succeeded on a cache hit)."""
        return Job.model_validate(await self._send(_http.submit(job, idempotency_key)))

    async def submit_prompt(
        self,
        name: str,
        variables: Mapping[str, str],
        label: str | None = None,
        version: int | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Job:
        """A job running prompt `name` (at `label`, default production, or `version`)."""
        body = _http.prompt_job(name, variables, label, version, options)
        return await self.submit(body, idempotency_key=idempotency_key)

    async def get(self, job_id: str) -> Job:
        return Job.model_validate(await self._send(_http.get(job_id)))

    async def wait(self, job_id: str, timeout_s: float = 60.0) -> Job:
        """Long-poll until the job is terminal or `timeout_s` passes (up to 30 s per
        request); returns the job as last seen, which may still be queued or running."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            job = Job.model_validate(await self._send(_http.get(job_id, wait_s=remaining)))
            if job.done or time.monotonic() >= deadline:
                return job

    async def list(
        self, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> JobPage:
        """One page of the tenant's jobs, newest first; pass `next_cursor` back as `cursor`."""
        return JobPage.model_validate(await self._send(_http.list_jobs(status, limit, cursor)))

    async def iter_jobs(
        self, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Job]:
        """Every job (of `status`), page after page."""
        cursor = None
        while True:
            page = await self.list(status=status, limit=page_size, cursor=cursor)
            for job in page.data:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate(await self._send(_http.cancel(job_id)))

    async def events(
        self, job_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[JobEvent]:
        """The job's events as they happen (GET /v1/jobs/{id}/events), after
        `last_event_id` if given, up to `done`; see Client.events."""
        resume = _events.Resume(job_id, last_event_id)
        while True:
            call = _http.events(job_id, resume.last_event_id)
            kwargs = _http.request_kwargs(call, self._api_key, self._timeout)
            cause: Exception | None = None  # None: the server closed before done
            try:
                async with aconnect_sse(
                    self._http, call.method, self.base_url + call.path, **kwargs
                ) as source:
                    if not source.response.is_success:
                        await source.response.aread()
                        raise from_response(source.response)
                    async for sse in source.aiter_sse():
                        event = resume.take(sse)
                        if event is not None:
                            yield event
                            if isinstance(event, DoneEvent):
                                return
            except SSEError:  # a 2xx answer that is not an event stream: no retry helps
                raise
            except (httpx.TransportError, ServerError) as exc:
                cause = exc
            await asyncio.sleep(resume.backoff(cause))

    # Feedback

    async def feedback(
        self,
        job_id: str,
        name: str,
        value: bool | float | str,
        comment: str | None = None,
        source: str | None = None,
        id: str | None = None,  # the API's field name, though it shadows a builtin
    ) -> Feedback:
        """POST /v1/jobs/{id}/feedback: `value` a number, a boolean or a string; `source`
        user, reviewer or api (the default). With `id`, sending it again returns the
        feedback stored the first time, unchanged."""
        call = _http.feedback(job_id, name, value, comment, source, id)
        return Feedback.model_validate(await self._send(call))

    async def list_feedback(self, job_id: str) -> builtins.list[Feedback]:
        """The job's feedback, oldest first."""
        found = await self._send(_http.list_feedback(job_id))
        return [Feedback.model_validate(item) for item in found["data"]]

    # Batches

    async def submit_batch(
        self,
        jobs: Sequence[Mapping[str, Any] | BaseModel],
        metadata: Mapping[str, str] | None = None,
        webhook_url: str | None = None,
        tier: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Batch:
        """POST /v1/batches: each job is a job request with its `custom_id`."""
        call = _http.submit_batch(jobs, metadata, webhook_url, tier, idempotency_key)
        return Batch.model_validate(await self._send(call))

    async def get_batch(self, batch_id: str) -> Batch:
        return Batch.model_validate(await self._send(_http.get_batch(batch_id)))

    async def list_batches(self, limit: int = 20, cursor: str | None = None) -> BatchPage:
        return BatchPage.model_validate(await self._send(_http.list_batches(limit, cursor)))

    async def iter_batches(self, page_size: int = 100) -> AsyncIterator[Batch]:
        cursor = None
        while True:
            page = await self.list_batches(limit=page_size, cursor=cursor)
            for batch in page.data:
                yield batch
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def batch_results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        """The batch's results, one per job in input order, read as they stream in."""
        call = _http.batch_results(batch_id)
        kwargs = _http.request_kwargs(call, self._api_key, self._timeout)
        async with self._http.stream(call.method, self.base_url + call.path, **kwargs) as response:
            if not response.is_success:
                await response.aread()
                raise from_response(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield BatchResult.model_validate_json(line)

    async def cancel_batch(self, batch_id: str) -> Batch:
        return Batch.model_validate(await self._send(_http.cancel_batch(batch_id)))
