"""POST /v1/responses, GET /v1/responses/{id} and its cancel against the real stack,
driven by the official openai SDK: waited, background and streamed responses, a stream
resumed after a dropped connection, structured output, cancel, another tenant's id, and
the SDK's own exceptions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import openai
import psycopg
import pytest
from openai.types.responses import (
    Response,
    ResponseErrorEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from pydantic import BaseModel

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import spend_today, unique, wait_until
from tests.stack import Stack

# The events of a streamed response that ends well, in order (deltas apart).
OPENING = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def _sdk(live: Stack, api_key: str) -> openai.OpenAI:
    # max_retries=0: each test sees the first answer, not the SDK's retry of it.
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=api_key, max_retries=0)


def _job_id(response_id: str) -> str:
    return str(uuid.UUID(hex=response_id.removeprefix("resp_")))


def _deltas(events: Iterable[ResponseStreamEvent]) -> str:
    return "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))


def _types(events: Iterable[ResponseStreamEvent]) -> list[str]:
    """The event types, the run of deltas as one."""
    kinds: list[str] = []
    for event in events:
        if event.type == "response.output_text.delta" and kinds and kinds[-1] == event.type:
            continue
        kinds.append(event.type)
    return kinds


def _final(events: list[ResponseStreamEvent]) -> Response:
    last = events[-1]
    assert last.type in ("response.completed", "response.failed", "response.incomplete")
    return last.response


def test_response_waits_for_its_job(live: Stack, client: Client) -> None:
    message = unique("hello responses")
    raw = _sdk(live, client.api_key).responses.with_raw_response.create(
        model="sim/echo",
        input=message,
        instructions="Answer kindly.",
        metadata={"team": "a"},
        temperature=0.5,
        extra_body={"max_attempts": 2},
    )
    response = raw.parse()
    job_id = raw.headers["x-aijobs-job-id"]
    assert response.id == f"resp_{uuid.UUID(job_id).hex}"
    assert (response.object, response.status, response.model) == (
        "response",
        "completed",
        "sim/echo",
    )
    assert response.output_text == message
    assert response.instructions == "Answer kindly."
    assert response.metadata == {"team": "a"}
    assert response.temperature == 0.5
    assert response.error is None and response.completed_at is not None

    job = client.http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["metadata"] == {"team": "a"}
    assert job["result"]["content"] == message
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (
        job["usage"]["input_tokens"],
        job["usage"]["output_tokens"],
    )
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    # The instructions ran as the job's first message (a system message).
    assert job["usage"]["input_tokens"] == len(message.split()) + 2


def test_input_messages_and_cached_tokens(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[cached:3] from parts")
    response = _sdk(live, client.api_key).responses.create(
        model="openai/gpt-4o-mini",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": message}]},
        ],
    )
    assert response.output_text == f"echo: {message}"
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 3
    sent = fake_openai.bodies[message][0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]


def test_background_response_is_polled_until_completed(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[sleep:1] in the background")
    sdk = _sdk(live, client.api_key)
    created = sdk.responses.create(
        model="openai/gpt-4o-mini", input=message, background=True, extra_body={"cache": False}
    )
    assert created.status in ("queued", "in_progress")
    assert created.background is True
    assert created.output == [] and created.usage is None

    def completed() -> Response | None:
        found = sdk.responses.retrieve(created.id)
        return found if found.status == "completed" else None

    done = wait_until(completed, what="the background response to complete")
    assert done.id == created.id
    assert done.output_text == f"echo: {message}"
    assert done.output[0].id == f"msg_{created.id.removeprefix('resp_')}"
    assert fake_openai.count(message) == 1


def test_streamed_response_events(live: Stack, client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[chunks:4] [pace:0.2] streamed response")
    sdk = _sdk(live, client.api_key)
    stream = sdk.responses.create(
        model="openai/gpt-4o-mini", input=message, stream=True, extra_body={"cache": False}
    )
    arrived: list[tuple[float, ResponseStreamEvent]] = [(time.monotonic(), e) for e in stream]
    events = [event for _, event in arrived]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert _types(events) == [*OPENING, "response.output_text.delta", *CLOSING]
    deltas = [t for t, e in arrived if e.type == "response.output_text.delta"]
    assert len(deltas) >= 4 and arrived[-1][0] - deltas[0] >= 0.4  # as the provider sent them
    final = _final(events)
    assert final.status == "completed"
    assert _deltas(events) == final.output_text == f"echo: {message}"
    done = next(e for e in events if isinstance(e, ResponseTextDoneEvent))
    assert done.text == final.output_text
    assert fake_openai.streamed(message) == [True]
    # Any reader regenerates the same events from the job.
    replay = list(sdk.responses.retrieve(final.id, stream=True))
    assert [(e.sequence_number, e.type) for e in replay] == [
        (e.sequence_number, e.type) for e in events
    ]
    assert _deltas(replay) == _deltas(events)


def test_background_stream_resumes_after_a_dropped_connection(live: Stack, client: Client) -> None:
    message = unique("[chunks:8] [pace:0.15] resumed")
    sdk = _sdk(live, client.api_key)
    stream = sdk.responses.create(
        model="openai/gpt-4o-mini",
        input=message,
        background=True,
        stream=True,
        extra_body={"cache": False},
    )
    seen: list[ResponseStreamEvent] = []
    for event in stream:
        seen.append(event)
        if sum(e.type == "response.output_text.delta" for e in seen) == 3:
            break
    stream.close()  # the connection drops mid-response
    first = seen[0]
    assert first.type == "response.created"
    response_id = first.response.id
    last = seen[-1].sequence_number

    resumed = list(sdk.responses.retrieve(response_id, stream=True, starting_after=last))
    assert resumed[0].sequence_number == last + 1
    events = seen + resumed
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert _types(events) == [*OPENING, "response.output_text.delta", *CLOSING]
    final = _final(events)
    assert _deltas(events) == final.output_text == f"echo: {message}"

    replay = list(sdk.responses.retrieve(response_id, stream=True))
    assert [(e.sequence_number, e.type) for e in replay] == [
        (e.sequence_number, e.type) for e in events
    ]
    assert [e.delta for e in replay if isinstance(e, ResponseTextDeltaEvent)] == [
        e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)
    ]


def test_reset_after_text_gives_an_error_event_and_the_text_goes_on(
    live: Stack, client: Client
) -> None:
    # The first model's stream breaks off after 2 chunks; its fallback answers.
    message = unique("[chunks:4] [cut:2] then a fallback")
    events = list(
        _sdk(live, client.api_key).responses.create(
            model="openai/gpt-4o-mini",
            input=message,
            stream=True,
            extra_body={"cache": False, "max_attempts": 1, "fallbacks": ["sim/echo"]},
        )
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = _types(events)
    assert kinds == [
        *OPENING,
        "response.output_text.delta",
        "error",
        "response.output_text.delta",
        *CLOSING,
    ]
    error = next(e for e in events if isinstance(e, ResponseErrorEvent))
    assert error.code and "mid-stream" in error.message
    after = events[events.index(error) + 1 :]
    final = _final(events)
    assert final.model == "sim/echo"
    assert _deltas(after) == final.output_text == message
    done = next(e for e in events if isinstance(e, ResponseTextDoneEvent))
    assert done.text == message


def test_structured_output_via_text_format(live: Stack, client: Client) -> None:
    class City(BaseModel):
        city: str

    sdk = _sdk(live, client.api_key)
    parsed = sdk.responses.parse(model="sim/echo", input='{"city": "Paris"}', text_format=City)
    assert parsed.output_parsed == City(city="Paris")
    assert parsed.text is not None and parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"
    job = client.http.get(f"/v1/jobs/{_job_id(parsed.id)}").json()
    assert job["result"]["parsed"] == {"city": "Paris"}
    # Output that does not fit the schema fails the job (invalid_output), not the parse.
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.responses.create(
            model="sim/echo",
            input=unique("not json"),
            text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            extra_body={"max_attempts": 1},
        )
    assert (caught.value.status_code, caught.value.code) == (502, "invalid_output")


def test_output_cut_at_the_cap_is_incomplete(live: Stack, client: Client) -> None:
    response = _sdk(live, client.api_key).responses.create(
        model="sim/echo", input=unique("one two three four five six"), max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "one two"
    assert response.max_output_tokens == 2


def test_cancel(live: Stack, client: Client) -> None:
    sdk = _sdk(live, client.api_key)
    created = sdk.responses.create(
        model="openai/gpt-4o-mini",
        input=unique("[sleep:5] too slow"),
        background=True,
        extra_body={"cache": False},
    )
    cancelled = sdk.responses.cancel(created.id)
    assert (cancelled.id, cancelled.status) == (created.id, "cancelled")
    # aijobs' codes are not among the SDK's Literal of OpenAI's: compared as strings.
    assert cancelled.error is not None and str(cancelled.error.code) == "cancelled"
    assert sdk.responses.retrieve(created.id).status == "cancelled"
    assert client.http.get(f"/v1/jobs/{_job_id(created.id)}").json()["status"] == "cancelled"
    done = sdk.responses.create(model="sim/echo", input=unique("finished"))
    with pytest.raises(openai.ConflictError):
        sdk.responses.cancel(done.id)


def test_a_cancelled_stream_ends_with_response_failed(live: Stack, client: Client) -> None:
    sdk = _sdk(live, client.api_key)
    stream = sdk.responses.create(
        model="openai/gpt-4o-mini",
        input=unique("[sleep:5] cancelled while streaming"),
        stream=True,
        extra_body={"cache": False},
    )
    events: list[ResponseStreamEvent] = []
    for event in stream:
        events.append(event)
        if event.type == "response.created":
            sdk.responses.cancel(event.response.id)
    final = _final(events)
    assert events[-1].type == "response.failed"
    assert final.status == "cancelled"


def test_another_tenants_response_is_404(live: Stack, make_client: Callable[..., Client]) -> None:
    owner, other = make_client(), make_client()
    mine = _sdk(live, owner.api_key).responses.create(model="sim/echo", input=unique("mine"))
    sdk = _sdk(live, other.api_key)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.retrieve(mine.id)
    assert caught.value.code == "not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.cancel(mine.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(mine.id, stream=True)
    for bad in ("resp_xyz", mine.id.removeprefix("resp_"), f"resp_{uuid.uuid4().hex}"):
        with pytest.raises(openai.NotFoundError):
            _sdk(live, owner.api_key).responses.retrieve(bad)
    # An embed job is no Response.
    embed = owner.submit({"model": "sim/embed", "task": "embed", "input": "x"}).json()
    with pytest.raises(openai.NotFoundError):
        _sdk(live, owner.api_key).responses.retrieve(f"resp_{uuid.UUID(embed['id']).hex}")


def test_sdk_exceptions(
    live: Stack, make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        _sdk(live, "not-a-key").responses.create(model="sim/echo", input="x")
    assert unauthorized.value.code == "unauthorized"

    spent = make_client(daily_budget=Decimal("0.01"))
    spend_today(db, spent.tenant, "0.01")
    with pytest.raises(openai.APIStatusError) as budget:
        _sdk(live, spent.api_key).responses.create(model="sim/echo", input=unique("x"))
    assert (budget.value.status_code, budget.value.code) == (402, "budget_exceeded")
    with pytest.raises(openai.APIStatusError) as budget_stream:
        _sdk(live, spent.api_key).responses.create(model="sim/echo", input=unique("x"), stream=True)
    assert budget_stream.value.status_code == 402

    limited = make_client(rpm=1)
    sdk = _sdk(live, limited.api_key)
    sdk.responses.create(model="sim/echo", input=unique("first"), background=True)
    with pytest.raises(openai.RateLimitError) as rate:
        sdk.responses.create(model="sim/echo", input=unique("second"), background=True)
    assert rate.value.code == "rate_limited"
    assert int(rate.value.response.headers["Retry-After"]) >= 1


def test_failed_response(live: Stack, client: Client) -> None:
    sdk = _sdk(live, client.api_key)
    message = unique("[status:400] refused upstream")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.responses.create(model="openai/gpt-4o-mini", input=message)
    assert (caught.value.status_code, caught.value.code) == (502, "provider_error")
    job_id = caught.value.response.headers["x-aijobs-job-id"]
    read = sdk.responses.retrieve(f"resp_{uuid.UUID(job_id).hex}")
    assert read.status == "failed"
    assert read.error is not None and str(read.error.code) == "provider_error"
    events = list(sdk.responses.retrieve(read.id, stream=True))
    assert _types(events) == ["response.created", "response.in_progress", "response.failed"]


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"tools": [{"type": "web_search"}]}, "unsupported"),
        ({"previous_response_id": "resp_123"}, "unsupported"),
        ({"store": False}, "unsupported"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "unsupported"),
        ({"not_a_field": 1}, "invalid_request"),
        ({"model": "nobody/model"}, "unknown_model"),
    ],
)
def test_refused_bodies(live: Stack, client: Client, extra: dict[str, Any], code: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        _sdk(live, client.api_key).responses.create(model="sim/echo", input="x", extra_body=extra)
    assert caught.value.code == code
