"""What the sync and async clients share: each method's request as a value (method,
path, query, body, headers), built once here, so the two clients only send them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from aijobs.client.errors import from_response

MAX_WAIT_S = 30.0  # the API's longest long-poll per request
# An open event stream is pinged (": ping") well within this, so a minute without a
# byte is a dead connection, whatever shorter timeout the client has.
EVENTS_READ_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 60.0
USER_AGENT = "aijobs-python-client"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None  # None: the client's own timeout


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}


def _segment(value: str) -> str:
    """An id as one path segment: nothing a caller passes can reach another route."""
    return quote(str(value), safe="")


def job_body(job: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """A job request as JSON: a dict as given, a pydantic model (JobRequest) with only
    the fields that were set, so the API's defaults apply to the rest."""
    if isinstance(job, BaseModel):
        dumped: dict[str, Any] = job.model_dump(mode="json", exclude_unset=True)
        return dumped
    return dict(job)


def submit(job: Mapping[str, Any] | BaseModel, idempotency_key: str | None) -> Call:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call("POST", "/v1/jobs", json=job_body(job), headers=headers)


def prompt_job(
    name: str,
    variables: Mapping[str, str],
    label: str | None,
    version: int | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """A job naming a prompt (SPEC "Prompts"); `options` are other request fields
    (model, params, metadata, subject, webhook_url...), which override the version's."""
    prompt: dict[str, Any] = {"name": name, "variables": dict(variables)}
    if label is not None:
        prompt["label"] = label
    if version is not None:
        prompt["version"] = version
    return {**options, "prompt": prompt}


def get(job_id: str, wait_s: float = 0) -> Call:
    if wait_s <= 0:
        return Call("GET", f"/v1/jobs/{_segment(job_id)}")
    wait_s = min(wait_s, MAX_WAIT_S)
    # The request must outlive its long-poll, whatever the client's timeout.
    return Call(
        "GET",
        f"/v1/jobs/{_segment(job_id)}",
        params={"wait": round(wait_s, 3)},
        timeout_s=wait_s + DEFAULT_TIMEOUT_S,
    )


def list_jobs(status: str | None, limit: int, cursor: str | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/v1/jobs", params=params)


def events(job_id: str, last_event_id: int | None) -> Call:
    """The job's event stream after event `last_event_id`; without it, from the start,
    or `done` alone for a job that has ended."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    return Call(
        "GET",
        f"/v1/jobs/{_segment(job_id)}/events",
        headers=headers,
        timeout_s=EVENTS_READ_TIMEOUT_S,
    )


def cancel(job_id: str) -> Call:
    return Call("POST", f"/v1/jobs/{_segment(job_id)}/cancel")


def feedback(
    job_id: str,
    name: str,
    value: bool | float | str,
    comment: str | None,
    source: str | None,
    feedback_id: str | None,
) -> Call:
    """Only what is given is sent: the API's defaults apply to the rest."""
    body: dict[str, Any] = {"name": name, "value": value}
    if comment is not None:
        body["comment"] = comment
    if source is not None:
        body["source"] = source
    if feedback_id is not None:
        body["id"] = feedback_id
    return Call("POST", f"/v1/jobs/{_segment(job_id)}/feedback", json=body)


def list_feedback(job_id: str) -> Call:
    return Call("GET", f"/v1/jobs/{_segment(job_id)}/feedback")


def submit_batch(
    jobs: Sequence[Mapping[str, Any] | BaseModel],
    metadata: Mapping[str, str] | None,
    webhook_url: str | None,
    tier: str | None,
    idempotency_key: str | None,
) -> Call:
    """JSON body; each job carries its `custom_id` beside the job request's fields."""
    body: dict[str, Any] = {"jobs": [job_body(job) for job in jobs]}
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    if tier is not None:
        body["tier"] = tier
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call("POST", "/v1/batches", json=body, headers=headers)


def get_batch(batch_id: str) -> Call:
    return Call("GET", f"/v1/batches/{_segment(batch_id)}")


def list_batches(limit: int, cursor: str | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/v1/batches", params=params)


def batch_results(batch_id: str) -> Call:
    return Call("GET", f"/v1/batches/{_segment(batch_id)}/results")


def cancel_batch(batch_id: str) -> Call:
    return Call("POST", f"/v1/batches/{_segment(batch_id)}/cancel")


def request_kwargs(call: Call, api_key: str, timeout_s: float) -> dict[str, Any]:
    """httpx's arguments for a call (the same for httpx.Client and httpx.AsyncClient)."""
    kwargs: dict[str, Any] = {
        "params": call.params or None,
        "headers": {**auth_headers(api_key), **call.headers},
        "timeout": max(timeout_s, call.timeout_s or 0),
    }
    if call.json is not None:
        kwargs["json"] = call.json
    return kwargs


def checked(response: httpx.Response) -> Any:
    """The JSON of a 2xx answer; else its AijobsError (the body must have been read)."""
    if not response.is_success:
        raise from_response(response)
    return response.json()
