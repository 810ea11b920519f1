"""What Client.events and AsyncClient.events share: an SSE event of
GET /v1/jobs/{id}/events as a typed event, and the bookkeeping of resuming (the id to
resume after, the wait before reconnecting, when to give up). The SSE framing itself
is httpx-sse's."""

from __future__ import annotations

import json
import random

from httpx_sse import ServerSentEvent

from aijobs.client.errors import StreamInterrupted
from aijobs.client.models import (
    AttemptEvent,
    DeltaEvent,
    DoneEvent,
    JobEvent,
    ResetEvent,
    StatusEvent,
)

# Reconnections in a row that may bring no new event (each connection refused with a
# 5xx, cut, or closed before `done`) before giving up; each waits longer: 0.25, 0.5,
# 1, 2, 4 s, jittered so that clients cut off together do not all come back at once.
RECONNECT_TRIES = 5
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 4.0

_KINDS: dict[str, type[JobEvent]] = {
    "status": StatusEvent,
    "attempt": AttemptEvent,
    "delta": DeltaEvent,
    "reset": ResetEvent,
    "done": DoneEvent,
}


def parse(sse: ServerSentEvent) -> JobEvent | None:
    """The typed event, or None for a kind this client does not know (a later API's)."""
    kind = _KINDS.get(sse.event)
    if kind is None:
        return None
    data = json.loads(sse.data)
    fields = {"job": data} if kind is DoneEvent else data
    return kind.model_validate({**fields, "id": sse.id, "type": sse.event})


class Resume:
    """Where a job's event stream stands, across its connections."""

    def __init__(self, job_id: str, last_event_id: int | None) -> None:
        self.job_id = job_id
        self.last_event_id = last_event_id
        self._failures = 0

    def take(self, sse: ServerSentEvent) -> JobEvent | None:
        """The event to hand out, or None for one to skip: a blank line after a comment
        (httpx-sse dispatches it as an event without data once an id was seen; the SSE
        spec dispatches no event without data), an event at or before the last id seen
        (a reconnection never repeats one), or a kind this client does not know (its id
        still counts). `done` always passes: it ends the stream, whatever its id."""
        if not sse.data:
            return None
        if not sse.id.isdigit():
            raise ValueError(f"an event of job {self.job_id} without an integer id: {sse!r}")
        event_id = int(sse.id)
        seen = self.last_event_id is not None and event_id <= self.last_event_id
        if seen and sse.event != "done":
            return None
        if not seen:
            self.last_event_id = event_id
            self._failures = 0
        return parse(sse)

    def backoff(self, cause: Exception | None) -> float:
        """Seconds to wait before the next connection; StreamInterrupted (from `cause`,
        None when the server closed the stream before `done`) when the tries are spent."""
        self._failures += 1
        if self._failures > RECONNECT_TRIES:
            raise StreamInterrupted(self.job_id, self.last_event_id) from cause
        delay = min(FIRST_BACKOFF_S * 2.0 ** (self._failures - 1), MAX_BACKOFF_S)
        return delay * random.uniform(0.5, 1.0)
