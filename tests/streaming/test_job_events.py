"""GET /v1/jobs/{id}/events against real API and worker processes and the fake
provider's streaming mode (SPEC "Streaming"): deltas before the end, exact ids and
Last-Event-ID resume, a second API process, `reset` after a failed attempt and after a
SIGKILLed worker, `done` at once for an ended job. The events are read raw (httpx-sse),
not through aijobs.client, so a repeated or missing id on the wire is seen."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import httpx_sse
import pytest
import redis

from aijobs.streaming.events import stream_key
from tests.conftest import Client, Services
from tests.helpers import chat, unique, wait_until
from tests.stack import Stack


@dataclass
class Seen:
    id: int
    type: str
    data: dict[str, Any]
    at: float  # time.monotonic() when it was read


def read_events(
    http: httpx.Client,
    job_id: str,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    timeout_s: float = 30,
) -> list[Seen]:
    """The stream's events until `done`, or until `stop_after` deltas (then the
    connection is dropped)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    seen: list[Seen] = []
    with httpx_sse.connect_sse(
        http, "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout_s
    ) as source:
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            if not sse.data:
                continue
            seen.append(Seen(int(sse.id), sse.event, json.loads(sse.data), time.monotonic()))
            deltas = sum(1 for event in seen if event.type == "delta")
            if sse.event == "done" or (stop_after is not None and deltas >= stop_after):
                break
    return seen


def ids(events: list[Seen]) -> list[int]:
    return [event.id for event in events]


def text(events: list[Seen]) -> str:
    """The deltas of the last attempt (those before a reset are void)."""
    kept: list[str] = []
    for event in events:
        if event.type == "reset":
            kept = []
        elif event.type == "delta":
            kept.append(event.data["text"])
    return "".join(kept)


def test_a_streamed_job_sends_deltas_before_it_ends(client: Client) -> None:
    message = f"{unique('stream')} [chunks:8] [pace:0.15]"
    job = client.submit(chat(message, stream=True)).json()
    events = read_events(client.http, job["id"])
    kinds = [event.type for event in events]
    assert kinds[0] == "status" and kinds[-1] == "done"
    assert "attempt" in kinds
    deltas = [event for event in events if event.type == "delta"]
    assert len(deltas) >= 4
    done = events[-1]
    assert done.data["status"] == "succeeded"
    assert text(events) == done.data["result"]["content"]
    # The first delta came well before the end (8 chunks paced 0.15 s apart).
    assert done.at - deltas[0].at > 0.6
    # Ids are 1, 2, 3, ... with no gap (an initial status before any entry has id 0).
    numbered = [i for i in ids(events) if i > 0]
    assert numbered == list(range(numbered[0], numbered[0] + len(numbered)))
    attempt = next(event for event in events if event.type == "attempt")
    assert attempt.data == {"number": 1, "model": "openai/gpt-4o-mini"}


def test_a_job_without_stream_has_no_deltas(client: Client) -> None:
    job = client.submit(chat(unique("plain") + " [chunks:4]")).json()
    events = read_events(client.http, job["id"])
    kinds = [event.type for event in events]
    assert "delta" not in kinds
    assert kinds[-1] == "done" and events[-1].data["status"] == "succeeded"


def test_an_ended_job_answers_done_at_once(client: Client) -> None:
    job = client.submit(chat(unique("ended"), stream=True)).json()
    client.wait(job["id"])
    started = time.monotonic()
    events = read_events(client.http, job["id"])
    assert time.monotonic() - started < 1.0
    assert [event.type for event in events] == ["done"]
    assert events[0].data["id"] == job["id"]
    assert events[0].data["status"] == "succeeded"
    # Asked from the start (Last-Event-ID: 0), the events kept are replayed first.
    replayed = read_events(client.http, job["id"], last_event_id="0")
    assert [e.type for e in replayed][:2] == ["status", "attempt"]
    assert replayed[-1].type == "done" and replayed[-1].id == events[0].id


def test_last_event_id_resumes_exactly_after_it(client: Client) -> None:
    message = f"{unique('resume')} [chunks:12] [pace:0.1]"
    job = client.submit(chat(message, stream=True)).json()
    first = read_events(client.http, job["id"], stop_after=3)
    assert first[-1].type == "delta"
    rest = read_events(client.http, job["id"], last_event_id=str(first[-1].id))
    together = first + rest
    assert together[-1].type == "done"
    assert ids(rest)[0] == first[-1].id + 1  # nothing lost, nothing repeated
    numbered = [i for i in ids(together) if i > 0]
    assert numbered == list(range(1, len(numbered) + 1))
    everything = read_events(client.http, job["id"], last_event_id="0")
    assert [(e.id, e.type, e.data) for e in everything[:-1]] == [
        (e.id, e.type, e.data) for e in together[:-1] if e.id > 0
    ]
    assert text(together) == together[-1].data["result"]["content"]


def test_a_second_api_process_serves_the_same_events(
    live: Stack, client: Client, services: Services
) -> None:
    second = Stack(live.env, name="events-second-api")
    second.start_api()
    try:
        message = f"{unique('two-apis')} [chunks:6] [pace:0.1]"
        job = client.submit(chat(message, stream=True)).json()
        headers = {"Authorization": client.http.headers["Authorization"]}
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=30) as other:
            results: dict[str, list[Seen]] = {}
            reader = threading.Thread(
                target=lambda: results.update(one=read_events(client.http, job["id"]))
            )
            reader.start()
            from_second = read_events(other, job["id"])
            reader.join(timeout=30)
        from_first = results["one"]
        assert [(e.id, e.type) for e in from_second] == [(e.id, e.type) for e in from_first]
        assert any(e.type == "delta" for e in from_second)
        assert text(from_second) == from_second[-1].data["result"]["content"]
    finally:
        second.stop()


def test_a_failed_check_sends_reset_and_the_next_attempt_streams_anew(client: Client) -> None:
    # The fake echoes the last user message: the first answer (the request) fails the
    # check after it was streamed; the second (an echo of the retry's instruction,
    # "Your previous answer failed these checks: ...") passes.
    message = f"{unique('recheck')} [chunks:4]"
    check = {"type": "regex", "pattern": "previous answer", "on_fail": "retry"}
    job = client.submit(chat(message, stream=True, checks=[check])).json()
    events = read_events(client.http, job["id"])
    kinds = [event.type for event in events]
    assert "reset" in kinds, kinds
    reset_at = kinds.index("reset")
    assert "delta" in kinds[:reset_at]  # the void deltas of the failed attempt
    assert events[reset_at].data == {"attempt": 1, "code": "check_failed"}
    attempts = [e.data["number"] for e in events if e.type == "attempt"]
    assert attempts == [1, 2]
    assert events[-1].data["status"] == "succeeded"
    assert text(events) == events[-1].data["result"]["content"]
    assert "Your previous answer" in text(events)


def test_a_call_that_fails_before_streaming_resets_without_deltas(client: Client) -> None:
    message = f"{unique('fail-first')} [fail:500x1]"
    job = client.submit(chat(message, stream=True)).json()
    events = read_events(client.http, job["id"])
    kinds = [event.type for event in events]
    reset_at = kinds.index("reset")
    assert "delta" not in kinds[:reset_at]
    assert events[reset_at].data["code"] == "provider_error"
    assert events[-1].data["status"] == "succeeded"
    assert text(events) == events[-1].data["result"]["content"]


def test_a_queued_job_cancelled_ends_its_stream(make_client: Any, db: Any) -> None:
    # A tenant capped at one call in flight: its second job waits queued.
    client = make_client(max_inflight=1)
    blocker = client.submit(chat(unique("blocker") + " [sleep:3]")).json()
    queued = client.submit(chat(unique("queued"), stream=True)).json()
    wait_until(lambda: client.http.get(f"/v1/jobs/{blocker['id']}").json()["status"] == "running")
    got: list[Seen] = []
    reader = threading.Thread(target=lambda: got.extend(read_events(client.http, queued["id"])))
    reader.start()
    time.sleep(0.5)
    assert client.http.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 200
    started = time.monotonic()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert time.monotonic() - started < 2.0
    assert got[0].type == "status" and got[0].data == {"status": "queued"} and got[0].id == 0
    assert got[-1].type == "done" and got[-1].data["status"] == "cancelled"


def test_other_tenants_and_bad_ids_are_refused(make_client: Any) -> None:
    owner, other = make_client(), make_client()
    job = owner.submit(chat(unique("mine"))).json()
    response = other.http.get(f"/v1/jobs/{job['id']}/events")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "not_found"
    bad = owner.http.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "x1"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    assert owner.http.get(f"/v1/jobs/{job['id']}/events", headers={}).status_code == 200


def test_embed_jobs_cannot_stream(client: Client) -> None:
    response = client.submit(
        {"model": "openai/text-embedding-3-small", "task": "embed", "input": "x", "stream": True}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_sigkilled_worker_shows_reset_then_the_new_attempt(live: Stack, client: Client) -> None:
    message = f"{unique('killed')} [chunks:20] [pace:0.25]"
    job = client.submit(chat(message, stream=True)).json()
    first = read_events(client.http, job["id"], stop_after=2)
    assert [e.type for e in first[-2:]] == ["delta", "delta"]
    live.kill_workers(signal.SIGKILL)  # every worker: the job's attempt dies mid-stream
    live.start_worker()
    rest = read_events(client.http, job["id"], last_event_id=str(first[-1].id), timeout_s=90)
    kinds = [e.type for e in rest]
    assert kinds[0] == "reset" and rest[0].data["code"] == "interrupted", kinds
    attempts = [e.data["number"] for e in rest if e.type == "attempt"]
    assert attempts and attempts[0] == 2
    assert rest[-1].type == "done" and rest[-1].data["status"] == "succeeded"
    assert text(first + rest) == rest[-1].data["result"]["content"]
    assert ids(rest)[0] == first[-1].id + 1


def test_a_job_that_ends_without_an_entry_still_ends_its_stream(make_client: Any, db: Any) -> None:
    # Ended behind the events' back (as the sweeper or a leader's settle may): the API's
    # once-a-second check of the jobs it follows ends the stream.
    client = make_client(max_inflight=1)
    client.submit(chat(unique("blocker") + " [sleep:3]"))
    queued = client.submit(chat(unique("behind"), stream=True)).json()
    got: list[Seen] = []
    reader = threading.Thread(target=lambda: got.extend(read_events(client.http, queued["id"])))
    reader.start()
    time.sleep(0.5)
    db.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = %s", (queued["id"],)
    )
    started = time.monotonic()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert time.monotonic() - started < 3.0
    assert got[-1].type == "done" and got[-1].data["status"] == "cancelled"


def test_a_burst_of_streams_is_served_by_one_api_process(make_client: Any) -> None:
    # 300 streams opened at once on one API process: every one answers, and every one
    # ends when its job is cancelled (one pub/sub connection, a bounded Redis pool).
    client = make_client(max_inflight=1)
    client.submit(chat(unique("blocker") + " [sleep:8]"))
    ids = [client.submit(chat(unique(f"burst-{i}"), stream=True)).json()["id"] for i in range(300)]

    async def follow_all() -> list[list[str]]:
        async with httpx.AsyncClient(
            base_url=str(client.http.base_url),
            headers={"Authorization": client.http.headers["Authorization"]},
            timeout=60,
            limits=httpx.Limits(max_connections=400),
        ) as http:

            async def one(job_id: str) -> list[str]:
                kinds: list[str] = []
                async with httpx_sse.aconnect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as s:
                    assert s.response.status_code == 200
                    async for sse in s.aiter_sse():
                        if sse.data:
                            kinds.append(json.loads(sse.data).get("status", sse.event))
                        if sse.event == "done":
                            break
                return kinds

            tasks = [asyncio.create_task(one(job_id)) for job_id in ids]
            await asyncio.sleep(3)  # all open and waiting
            for job_id in ids:
                await http.post(f"/v1/jobs/{job_id}/cancel")
            return await asyncio.gather(*tasks)

    results = asyncio.run(follow_all())
    assert len(results) == 300
    # Each stream ended with its job: cancelled, or (those the blocker's end let run
    # before the cancels came, on a slow machine) succeeded.
    ends = [kinds[-1] for kinds in results]
    assert set(ends) <= {"cancelled", "succeeded"}, ends
    assert ends.count("cancelled") >= 200, ends.count("cancelled")


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"])
def test_a_streamed_call_costs_what_the_same_call_unstreamed_does(
    client: Client, model: str
) -> None:
    # The same message twice (no cache), streamed and not: the same usage and cost.
    message = f"{unique('costs')} [cached:3] [chunks:4] several words in the reply"
    ended = []
    for stream in (True, False):
        body = chat(message, model=model, stream=stream, cache=False)
        ended.append(client.wait(client.submit(body).json()["id"]))
    streamed, plain = ended
    assert streamed["status"] == plain["status"] == "succeeded"
    assert streamed["result"]["content"] == plain["result"]["content"]
    assert streamed["usage"] == plain["usage"]
    assert streamed["cost_usd"] == plain["cost_usd"]
    assert float(streamed["cost_usd"]) > 0


def test_a_job_nobody_follows_writes_no_events(client: Client, services: Services) -> None:
    # A drain nobody watches pays nothing for events; a streamed job always writes them.
    plain = client.wait(client.submit(chat(unique("unwatched"), cache=False)).json()["id"])
    streamed = client.wait(
        client.submit(chat(unique("streamed"), cache=False, stream=True)).json()["id"]
    )
    conn = redis.Redis.from_url(services.redis_url)
    try:
        assert conn.exists(stream_key(plain["id"])) == 0
        assert conn.exists(stream_key(streamed["id"])) == 1
    finally:
        conn.close()


def test_a_followed_job_without_stream_shows_its_attempt(make_client: Any) -> None:
    client = make_client(max_inflight=1)
    client.submit(chat(unique("blocker") + " [sleep:2]"))
    queued = client.submit(chat(unique("followed"))).json()
    events = read_events(client.http, queued["id"])
    kinds = [(event.type, event.data.get("status")) for event in events]
    assert ("status", "running") in kinds and ("attempt", None) in kinds, kinds
    assert "delta" not in [kind for kind, _ in kinds]
    assert events[-1].type == "done" and events[-1].data["status"] == "succeeded"
