"""The synchronous client of aijobs' HTTP API, on httpx.Client."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import SSEError, connect_sse
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


class Client:
    """`Client(base_url, api_key)`; pass `http_client` to bring your own httpx.Client
    (its transport, proxies, limits): it is then yours to close."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = _http.DEFAULT_TIMEOUT_S,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._owned = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: _http.Call) -> Any:
        response = self._http.request(
            call.method,
            self.base_url + call.path,
            **_http.request_kwargs(call, self._api_key, self._timeout),
        )
        return _http.checked(response)

    # Jobs

    def submit(
        self, job: Mapping[str, Any] | JobRequest, idempotency_key: str | None = None
    ) -> Job:
        """POST /v1/jobs: the job as accepted (queued, or already succeeded on a cache hit)."""
        return Job.model_validate(self._send(_http.submit(job, idempotency_key)))

    def submit_prompt(
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
        return self.submit(body, idempotency_key=idempotency_key)

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._send(_http.get(job_id)))

    def wait(self, job_id: str, timeout_s: float = 60.0) -> Job:
        """Long-poll until the job is terminal or `timeout_s` passes (up to 30 s per
        request); returns the job as last seen, which may still be queued or running."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            job = Job.model_validate(self._send(_http.get(job_id, wait_s=remaining)))
            if job.done or time.monotonic() >= deadline:
                return job

    def list(
        self, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> JobPage:
        """One page of the tenant's jobs, newest first; pass `next_cursor` back as `cursor`."""
        return JobPage.model_validate(self._send(_http.list_jobs(status, limit, cursor)))

    def iter_jobs(self, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Every job (of `status`), page after page."""
        cursor = None
        while True:
            page = self.list(status=status, limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._send(_http.cancel(job_id)))

    def events(self, job_id: str, last_event_id: int | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen (GET /v1/jobs/{id}/events), after
        `last_event_id` if given, up to `done`, the final job. A dropped connection (a
        network error, a 5xx, the stream closed before `done`) is resumed after the last
        event seen, so no event is lost or repeated; after a few tries in a row without
        a new event it raises StreamInterrupted. A 4xx raises at once (NotFound...).
        Without `last_event_id` a job that has ended gives `done` alone; 0 replays the
        events kept (24 h), of an ended job too."""
        resume = _events.Resume(job_id, last_event_id)
        while True:
            call = _http.events(job_id, resume.last_event_id)
            kwargs = _http.request_kwargs(call, self._api_key, self._timeout)
            cause: Exception | None = None  # None: the server closed before done
            try:
                with connect_sse(
                    self._http, call.method, self.base_url + call.path, **kwargs
                ) as source:
                    if not source.response.is_success:
                        source.response.read()
                        raise from_response(source.response)
                    for sse in source.iter_sse():
                        event = resume.take(sse)
                        if event is not None:
                            yield event
                            if isinstance(event, DoneEvent):
                                return
            except SSEError:  # a 2xx answer that is not an event stream: no retry helps
                raise
            except (httpx.TransportError, ServerError) as exc:
                cause = exc
            time.sleep(resume.backoff(cause))

    # Feedback

    def feedback(
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
        return Feedback.model_validate(self._send(call))

    def list_feedback(self, job_id: str) -> builtins.list[Feedback]:
        """The job's feedback, oldest first."""
        found = self._send(_http.list_feedback(job_id))
        return [Feedback.model_validate(item) for item in found["data"]]

    # Batches

    def submit_batch(
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
        return Batch.model_validate(self._send(call))

    def get_batch(self, batch_id: str) -> Batch:
        return Batch.model_validate(self._send(_http.get_batch(batch_id)))

    def list_batches(self, limit: int = 20, cursor: str | None = None) -> BatchPage:
        return BatchPage.model_validate(self._send(_http.list_batches(limit, cursor)))

    def iter_batches(self, page_size: int = 100) -> Iterator[Batch]:
        cursor = None
        while True:
            page = self.list_batches(limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def batch_results(self, batch_id: str) -> Iterator[BatchResult]:
        """The batch's results, one per job in input order, read as they stream in."""
        call = _http.batch_results(batch_id)
        kwargs = _http.request_kwargs(call, self._api_key, self._timeout)
        with self._http.stream(call.method, self.base_url + call.path, **kwargs) as response:
            if not response.is_success:
                response.read()
                raise from_response(response)
            for line in response.iter_lines():
                if line.strip():
                    yield BatchResult.model_validate_json(line)

    def cancel_batch(self, batch_id: str) -> Batch:
        return Batch.model_validate(self._send(_http.cancel_batch(batch_id)))
