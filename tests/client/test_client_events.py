"""Client.events and AsyncClient.events: first against a local server of canned events
that cuts its connections (resuming with Last-Event-ID, nothing lost or repeated, the
end at `done`, the bounded tries), then against real API and worker processes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from aijobs.client import (
    AsyncClient,
    AttemptEvent,
    Client,
    DeltaEvent,
    DoneEvent,
    JobEvent,
    NotFound,
    ResetEvent,
    ServerError,
    StatusEvent,
    StreamInterrupted,
    _events,
)
from tests.client.sse_server import Canned, CannedEvents, Connection
from tests.conftest import Client as TenantClient
from tests.helpers import chat, unique
from tests.stack import Stack

JOB = {
    "id": "job-1",
    "status": "succeeded",
    "model": "sim/echo",
    "created_at": "2026-01-01T00:00:00Z",
    "result": {"content": "Hello world", "finish_reason": "stop"},
}
EVENTS: list[Canned] = [
    (1, "status", {"status": "running"}),
    (2, "attempt", {"number": 1, "model": "sim/echo"}),
    (3, "delta", {"text": "Hel"}),
    (4, "reset", {"attempt": 1, "code": "provider_error"}),
    (5, "attempt", {"number": 2, "model": "sim/echo"}),
    (6, "delta", {"text": "Hello"}),
    (7, "progress", {"share": 0.5}),  # a kind this client does not know: skipped
    (8, "delta", {"text": " world"}),
    (9, "status", {"status": "succeeded"}),
    (10, "done", JOB),
]
KNOWN_IDS = [1, 2, 3, 4, 5, 6, 8, 9, 10]


def streamed_text(events: Iterable[JobEvent]) -> str:
    """The deltas of the attempt that ended the job (a reset voids those before it)."""
    pieces: list[str] = []
    for event in events:
        if isinstance(event, ResetEvent):
            pieces = []
        elif isinstance(event, DeltaEvent):
            pieces.append(event.text)
    return "".join(pieces)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_events, "FIRST_BACKOFF_S", 0.01)
    monkeypatch.setattr(_events, "MAX_BACKOFF_S", 0.05)


@pytest.fixture
def canned() -> Iterator[Callable[..., CannedEvents]]:
    started: list[CannedEvents] = []

    def start(*plan: Connection) -> CannedEvents:
        server = CannedEvents(EVENTS, list(plan)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# Against canned events


def test_a_cut_stream_resumes_after_the_last_event_and_stops_at_done(
    canned: Callable[..., CannedEvents],
) -> None:
    # Six failed connections, more than the tries allowed in a row, but each run of
    # them ended by a new event.
    server = canned(
        Connection(cut_after=3, how="abort"),  # events 1-3, then half of 4
        Connection(cut_after=2, how="close"),  # 4-5, then a clean end before done
        Connection(status=503),
        Connection(cut_after=0, how="abort"),  # nothing new
        Connection(cut_after=1, how="abort"),  # 6
        Connection(cut_after=1, how="close"),  # 7, of a kind unknown: skipped, id kept
    )
    with Client(server.base_url, "key-1") as sdk:
        events = list(sdk.events("job-1"))

    assert [event.id for event in events] == KNOWN_IDS
    resumed_after = [request.last_event_id for request in server.requests]
    assert resumed_after == [None, "3", "5", "5", "5", "6", "7"]  # none after done
    assert all(r.path == "/v1/jobs/job-1/events" for r in server.requests)
    assert all(r.headers["authorization"] == "Bearer key-1" for r in server.requests)
    assert all(r.headers["accept"] == "text/event-stream" for r in server.requests)

    assert events[0] == StatusEvent(id=1, status="running")
    assert events[1] == AttemptEvent(id=2, number=1, model="sim/echo")
    assert events[3] == ResetEvent(id=4, attempt=1, code="provider_error")
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.job.status == "succeeded"
    assert done.job.result is not None
    assert streamed_text(events) == done.job.result.content == "Hello world"


def test_it_resumes_after_the_last_event_id_given(canned: Callable[..., CannedEvents]) -> None:
    server = canned()
    with Client(server.base_url, "key-1") as sdk:
        events = list(sdk.events("job-1", last_event_id=5))
    assert [event.id for event in events] == [6, 8, 9, 10]
    assert [request.last_event_id for request in server.requests] == ["5"]


def test_events_a_server_sends_again_are_not_repeated(
    canned: Callable[..., CannedEvents],
) -> None:
    server = canned(Connection(cut_after=3), Connection(replay=True))
    with Client(server.base_url, "key-1") as sdk:
        assert [event.id for event in sdk.events("job-1")] == KNOWN_IDS
    assert [request.last_event_id for request in server.requests] == [None, "3"]


def test_it_gives_up_after_the_tries_without_a_new_event(
    canned: Callable[..., CannedEvents],
) -> None:
    tries = _events.RECONNECT_TRIES
    server = canned(Connection(cut_after=2, how="close"), *[Connection(cut_after=0)] * tries)
    seen: list[JobEvent] = []
    with Client(server.base_url, "key-1") as sdk, pytest.raises(StreamInterrupted) as stopped:
        seen.extend(sdk.events("job-1"))
    assert [event.id for event in seen] == [1, 2]
    assert stopped.value.last_event_id == 2 and stopped.value.job_id == "job-1"
    assert len(server.requests) == 1 + tries  # the server would serve it all next time
    assert stopped.value.__cause__ is not None  # the last cut

    server = canned(*[Connection(status=503)] * (tries + 1))
    with Client(server.base_url, "key-1") as sdk, pytest.raises(StreamInterrupted) as refused:
        list(sdk.events("job-1"))
    assert isinstance(refused.value.__cause__, ServerError)
    assert refused.value.last_event_id is None and len(server.requests) == 1 + tries


def test_a_4xx_raises_at_once(canned: Callable[..., CannedEvents]) -> None:
    server = canned(Connection(status=404))
    with Client(server.base_url, "key-1") as sdk, pytest.raises(NotFound) as absent:
        list(sdk.events("job-1"))
    assert (absent.value.status, absent.value.code) == (404, "not_found")
    assert len(server.requests) == 1


def test_the_async_client_resumes_the_same_way(canned: Callable[..., CannedEvents]) -> None:
    server = canned(Connection(cut_after=3), Connection(cut_after=2, how="close"))

    async def read() -> list[JobEvent]:
        async with AsyncClient(server.base_url, "key-1") as sdk:
            return [event async for event in sdk.events("job-1")]

    events = asyncio.run(read())
    assert [event.id for event in events] == KNOWN_IDS
    assert [request.last_event_id for request in server.requests] == [None, "3", "5"]
    assert streamed_text(events) == "Hello world"

    refused = canned(Connection(status=404))

    async def absent() -> None:
        async with AsyncClient(refused.base_url, "key-1") as sdk:
            async for _ in sdk.events("job-1"):
                pass

    with pytest.raises(NotFound):
        asyncio.run(absent())


# Against the real API and worker. sim/echo answers in 50 ms here, so a stream read
# from the start whatever the timing asks with last_event_id=0 (after=None, a job that
# has ended gives only `done`); the fake provider's [pace:S] keeps a stream going.


@pytest.fixture
def tenant(make_client: Callable[..., TenantClient]) -> TenantClient:
    return make_client()


@pytest.fixture
def sdk(live: Stack, tenant: TenantClient) -> Iterator[Client]:
    with Client(live.base_url, tenant.api_key) as client:
        yield client


def echo(content: str, **extra: Any) -> dict[str, Any]:
    return chat(content, model="sim/echo", **extra)


def test_a_streamed_sim_echo_job_gives_status_attempt_deltas_and_done(sdk: Client) -> None:
    message = unique("one two three four five six")
    job = sdk.submit(echo(message, stream=True, cache=False))
    events = list(sdk.events(job.id, last_event_id=0))

    assert isinstance(events[0], StatusEvent) and isinstance(events[-1], DoneEvent)
    attempts = [event for event in events if isinstance(event, AttemptEvent)]
    assert [(a.number, a.model) for a in attempts] == [(1, "sim/echo")]
    deltas = [event for event in events if isinstance(event, DeltaEvent)]
    assert len(deltas) > 1 and events.index(attempts[0]) < events.index(deltas[0])
    done = events[-1].job
    assert done.id == job.id and done.status == "succeeded" and done.result is not None
    assert streamed_text(events) == done.result.content == message
    assert [event.id for event in events] == list(range(1, len(events) + 1))


def test_deltas_arrive_as_the_provider_sends_them(sdk: Client) -> None:
    message = f"{unique('paced')} [chunks:6] [pace:0.15]"
    job = sdk.submit(chat(message, stream=True))
    arrived: list[tuple[JobEvent, float]] = [
        (event, time.monotonic()) for event in sdk.events(job.id)
    ]
    events = [event for event, _ in arrived]
    assert isinstance(events[0], StatusEvent)
    delta_times = [at for event, at in arrived if isinstance(event, DeltaEvent)]
    assert len(delta_times) == 6
    # Six chunks 0.15 s apart: the first is read well before the job ends.
    assert arrived[-1][1] - delta_times[0] > 0.45
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.job.result is not None
    assert streamed_text(events) == done.job.result.content
    numbered = [event.id for event in events if event.id > 0]
    assert numbered == list(range(1, len(numbered) + 1))


def test_a_reset_voids_the_deltas_of_the_failed_attempt(sdk: Client) -> None:
    # The fake cuts every streamed answer after 2 chunks; sim/echo, the fallback, ends it.
    message = f"{unique('cut off')} [chunks:4] [cut:2]"
    job = sdk.submit(chat(message, stream=True, max_attempts=1, fallbacks=["sim/echo"]))
    events = list(sdk.events(job.id, last_event_id=0))

    kinds = [event.type for event in events]
    assert kinds.count("attempt") == 2 and kinds.count("reset") == 1
    assert kinds.index("attempt") < kinds.index("delta") < kinds.index("reset")
    reset = next(event for event in events if isinstance(event, ResetEvent))
    assert reset.attempt == 1 and reset.code
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.job.answered_by == "sim/echo"
    assert done.job.result is not None
    assert streamed_text(events) == done.job.result.content == message
    every_delta = "".join(event.text for event in events if isinstance(event, DeltaEvent))
    assert every_delta != message


def test_an_ended_or_cached_job_answers_done_at_once(sdk: Client) -> None:
    body = echo(unique("ended"), stream=True)
    job = sdk.submit(body)
    assert sdk.wait(job.id).status == "succeeded"
    began = time.monotonic()
    (done,) = list(sdk.events(job.id))
    assert time.monotonic() - began < 1.5
    assert isinstance(done, DoneEvent) and done.job.id == job.id

    cached = sdk.submit(body)
    assert cached.cache_hit
    (hit,) = list(sdk.events(cached.id))
    assert isinstance(hit, DoneEvent) and hit.job.cache_hit and hit.job.id == cached.id


def test_events_resume_after_last_event_id(sdk: Client) -> None:
    message = unique("resume me please")
    job = sdk.submit(echo(message, stream=True, cache=False))
    everything = list(sdk.events(job.id, last_event_id=0))
    assert isinstance(everything[-1], DoneEvent)

    first: list[JobEvent] = []
    for event in sdk.events(job.id, last_event_id=0):
        first.append(event)
        if isinstance(event, DeltaEvent):
            break  # the connection is dropped after the first delta
    rest = list(sdk.events(job.id, last_event_id=first[-1].id))
    assert rest[0].id == first[-1].id + 1
    assert first + rest == everything
    assert streamed_text(rest) != message  # the half resumed alone lacks the start
    assert streamed_text(first + rest) == message


def test_the_async_client_reads_a_stream_as_it_comes(live: Stack, tenant: TenantClient) -> None:
    message = f"{unique('async')} [chunks:3] [pace:0.1]"

    async def read() -> list[JobEvent]:
        async with AsyncClient(live.base_url, tenant.api_key) as sdk:
            job = await sdk.submit(chat(message, stream=True))
            return [event async for event in sdk.events(job.id)]

    events = asyncio.run(read())
    assert isinstance(events[0], StatusEvent)
    assert sum(isinstance(event, DeltaEvent) for event in events) == 3
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.job.status == "succeeded"
    assert done.job.result is not None
    assert streamed_text(events) == done.job.result.content


def test_an_unknown_or_another_tenants_job_is_not_found(
    sdk: Client, live: Stack, make_client: Callable[..., TenantClient]
) -> None:
    job = sdk.submit(echo(unique("mine")))
    assert isinstance(list(sdk.events(job.id))[-1], DoneEvent)

    with pytest.raises(NotFound) as absent:
        list(sdk.events(str(uuid.uuid4())))
    assert (absent.value.status, absent.value.code) == (404, "not_found")

    with (
        Client(live.base_url, make_client().api_key) as stranger,
        pytest.raises(NotFound) as hidden,
    ):
        list(stranger.events(job.id))
    assert hidden.value.code == "not_found"
