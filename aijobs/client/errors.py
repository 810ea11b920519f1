"""The client's errors: every non-2xx answer of aijobs becomes an AijobsError carrying
the problem+json body's `code`, `detail` and `status`, as a subclass per kind."""

from __future__ import annotations

from typing import Any

import httpx


class AijobsError(Exception):
    """A non-2xx answer. `code` is aijobs' machine-readable error code (SPEC "Errors")."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str = "",
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        # The whole problem body: extra members such as a refused batch's `errors`.
        self.body: dict[str, Any] = body or {}


class Unauthorized(AijobsError):
    """401 or 403: a missing, wrong or revoked API key."""


class NotFound(AijobsError):
    """404: no such job or batch for this tenant (another tenant's id answers the same)."""


class BudgetExceeded(AijobsError):
    """402: the tenant is over its daily or monthly budget."""


class InvalidRequest(AijobsError):
    """400, 409, 413 or 422: the request was refused as it is (invalid_request,
    unknown_model, unknown_prompt, idempotency_conflict, check_failed, unsupported)."""


class RateLimited(AijobsError):
    """429: over the tenant's rpm. `retry_after` is the seconds the API asked to wait."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(AijobsError):
    """5xx: a failure on aijobs' side; the request may be retried."""


class StreamInterrupted(ConnectionError):
    """A job's event stream kept dropping before `done`: several reconnections in a row
    brought no new event. Pass `last_event_id` to `events()` again to go on from there;
    the last failure is the exception's `__cause__`."""

    def __init__(self, job_id: str, last_event_id: int | None) -> None:
        super().__init__(
            f"the events of job {job_id} stopped before done (last event: {last_event_id})"
        )
        self.job_id = job_id
        self.last_event_id = last_event_id


class WebhookVerificationError(ValueError):
    """A webhook whose signature does not match the secret, or whose timestamp is stale
    (more than five minutes away from now), or whose headers are missing."""


_BY_STATUS: dict[int, type[AijobsError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    402: BudgetExceeded,
    429: RateLimited,
}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def from_response(response: httpx.Response) -> AijobsError:
    """The error for a non-2xx answer (its body must have been read)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):  # not problem+json: a proxy's page, say
        body = {"detail": response.text[:500]}
    code = str(body.get("code") or ("internal" if status >= 500 else "http_error"))
    detail = str(body.get("detail") or response.reason_phrase)
    title = str(body.get("title") or "")
    if status in _BY_STATUS:
        kind = _BY_STATUS[status]
    elif status >= 500:
        kind = ServerError
    else:
        kind = InvalidRequest
    if kind is RateLimited:
        return RateLimited(
            status, code, detail, title=title, body=body, retry_after=_retry_after(response)
        )
    return kind(status, code, detail, title=title, body=body)
