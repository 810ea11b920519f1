"""The Responses API's shapes and streamed events, derived from jobs (no server needed)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from aijobs.errors import InvalidRequest, NotFound, Unsupported
from aijobs.jobs import responses_shapes
from aijobs.jobs.responses_events import ResponseEvents
from aijobs.streaming.events import Event

JOB_ID = "0b7e0a48-6a38-4c2b-9a57-0b1f6f6c2f10"
HEX = uuid.UUID(JOB_ID).hex


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "sim/echo", "input": "hi", **extra}


def _view(**extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "status": "succeeded",
        "model": "openai/gpt-4o-mini",
        "answered_by": "openai/gpt-4o-mini",
        "created_at": "2026-12-07T10:00:00+00:00",
        "finished_at": "2026-12-07T10:00:02+00:00",
        "result": {"content": "hello there", "finish_reason": "stop"},
        "error": None,
        "usage": {"input_tokens": 7, "output_tokens": 3},
        "metadata": {"team": "a"},
        **extra,
    }


REQUEST = {
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    "params": {"max_tokens": 50, "temperature": 0.2},
}


def test_body_becomes_a_chat_job() -> None:
    asked = responses_shapes.response_request(
        _body(
            input=[
                {"role": "developer", "content": "Be kind."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}],
                },
                {"role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
            ],
            instructions="Be brief.",
            text={"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            max_output_tokens=40,
            temperature=0.3,
            top_p=0.9,
            metadata={"k": "v"},
            background=True,
            stream=True,
            store=True,
            tools=[],
            max_attempts=2,
            cache=False,
        )
    )
    job = asked.job
    assert (asked.background, asked.stream, job.stream) == (True, True, True)
    assert [(m.role, m.content) for m in job.messages or []] == [
        ("system", "Be brief."),
        ("system", "Be kind."),
        ("user", "a"),
        ("assistant", "b"),
    ]
    assert (job.params.max_tokens, job.params.temperature, job.params.top_p) == (40, 0.3, 0.9)
    assert job.response_schema == {"type": "object"}
    assert (job.metadata, job.max_attempts, job.cache) == ({"k": "v"}, 2, False)
    plain = responses_shapes.response_request(_body())
    assert (plain.background, plain.stream, plain.job.stream) == (False, False, False)
    assert [(m.role, m.content) for m in plain.job.messages or []] == [("user", "hi")]


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [{"type": "web_search"}]},
        {"previous_response_id": "resp_1"},
        {"store": False},
        {"reasoning": {"effort": "low"}},
        {"include": ["message.output_text.logprobs"]},
        {"instructions": [{"role": "system", "content": "x"}]},
        {"input": [{"type": "function_call_output", "call_id": "1", "output": "x"}]},
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        {"text": {"verbosity": "low"}},
    ],
)
def test_what_a_job_cannot_honour_is_unsupported(extra: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        responses_shapes.response_request(_body(**extra))


@pytest.mark.parametrize(
    "body",
    [
        _body(foo=1),
        _body(input=[]),
        _body(input=[{"role": "robot", "content": "x"}]),
        _body(text={"format": {"type": "xml"}}),
        _body(stream_options={"include_obfuscation": False}),
        _body(background="yes"),
        {"input": "x"},
    ],
)
def test_bad_input_is_invalid_request(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        responses_shapes.response_request(body)


def test_ids() -> None:
    assert responses_shapes.response_id(JOB_ID) == f"resp_{HEX}"
    assert responses_shapes.job_id_of(f"resp_{HEX}") == JOB_ID
    for bad in (HEX, "resp_", f"resp_{HEX}0", "resp_" + "z" * 32, f"msg_{HEX}"):
        with pytest.raises(NotFound):
            responses_shapes.job_id_of(bad)


def test_response_object_of_a_succeeded_job() -> None:
    response = responses_shapes.response_object(_view(), REQUEST, True, 2, 1)
    assert response["id"] == f"resp_{HEX}"
    assert (response["object"], response["status"], response["background"]) == (
        "response",
        "completed",
        True,
    )
    assert response["created_at"] == 1796637600
    assert response["completed_at"] == 1796637602
    assert response["output"] == [
        {
            "id": f"msg_{HEX}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "hello there", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert response["usage"] == {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 1},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    assert (response["instructions"], response["max_output_tokens"]) == ("Be brief.", 50)
    assert (response["temperature"], response["metadata"]) == (0.2, {"team": "a"})
    assert response["text"] == {"format": {"type": "text"}}
    assert response["error"] is None and response["incomplete_details"] is None


@pytest.mark.parametrize(
    ("job", "status"),
    [
        ({"status": "queued", "result": None}, "queued"),
        ({"status": "running", "result": None}, "in_progress"),
        ({"result": {"content": "cut", "finish_reason": "length"}}, "incomplete"),
        ({"result": {"content": "cut", "finish_reason": "max_tokens"}}, "incomplete"),
        (
            {
                "status": "failed",
                "result": None,
                "error": {"code": "provider_error", "message": "x"},
            },
            "failed",
        ),
        (
            {"status": "cancelled", "result": None, "error": {"code": "cancelled", "message": "x"}},
            "cancelled",
        ),
    ],
)
def test_statuses(job: dict[str, Any], status: str) -> None:
    response = responses_shapes.response_object(_view(**job), REQUEST)
    assert response["status"] == status
    if status in ("queued", "in_progress"):
        assert response["output"] == [] and response["usage"] is None
    if status == "incomplete":
        assert response["incomplete_details"] == {"reason": "max_output_tokens"}
        assert response["output"][0]["status"] == "incomplete"
    if status in ("failed", "cancelled"):
        assert response["error"]["code"] == job["error"]["code"]
        assert response["output"] == []


def test_text_format_reads_back_as_json_schema() -> None:
    asked = responses_shapes.response_request(
        _body(
            text={"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}}}
        )
    )
    response = responses_shapes.response_object(_view(), responses_shapes.stored(asked.job))
    assert response["text"] == {
        "format": {"type": "json_schema", "name": "response", "schema": {"type": "object"}}
    }
    assert response["instructions"] is None


def _run(events: list[Event], final: dict[str, Any]) -> list[dict[str, Any]]:
    derived = ResponseEvents(responses_shapes.start(final, REQUEST, None))
    out = derived.opening()
    for event in events:
        out += derived.feed(event)
    return out + derived.finish(responses_shapes.response_object(final, REQUEST))


def _delta(n: int, text: str) -> Event:
    return Event(n, "delta", {"text": text})


def test_events_of_a_streamed_job() -> None:
    job_events = [
        Event(1, "status", {"status": "running"}),
        Event(2, "attempt", {"number": 1, "model": "openai/gpt-4o-mini"}),
        _delta(3, "hello "),
        _delta(4, "there"),
    ]
    out = _run(job_events, _view())
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert out[0]["response"]["status"] == "queued" and out[0]["response"]["output"] == []
    assert [e["delta"] for e in out if e["type"] == "response.output_text.delta"] == [
        "hello ",
        "there",
    ]
    assert out[-4]["text"] == "hello there"
    assert out[-1]["response"]["output"][0]["id"] == f"msg_{HEX}"
    assert _run(job_events, _view()) == out  # the same for every reader


def test_a_reset_after_deltas_is_an_error_event_and_the_text_goes_on() -> None:
    job_events = [
        Event(1, "attempt", {"number": 1, "model": "openai/gpt-4o-mini"}),
        _delta(2, "wrong "),
        Event(3, "reset", {"attempt": 1, "code": "provider_error"}),
        Event(4, "attempt", {"number": 2, "model": "openai/gpt-4o-mini"}),
        Event(5, "reset", {"attempt": 2, "code": "provider_timeout"}),  # before any text
        Event(6, "attempt", {"number": 3, "model": "openai/gpt-4o-mini"}),
        _delta(7, "hello "),
        _delta(8, "there"),
    ]
    out = _run(job_events, _view())
    kinds = [e["type"] for e in out]
    assert kinds.count("error") == 1
    assert kinds.count("response.output_item.added") == 1  # the same item goes on
    error = out[kinds.index("error")]
    assert error["code"] == "provider_error" and "mid-stream" in error["message"]
    after = out[kinds.index("error") :]
    assert "".join(e["delta"] for e in after if e["type"] == "response.output_text.delta") == (
        "hello there"
    )
    assert [e["sequence_number"] for e in out] == list(range(len(out)))


def test_a_job_that_never_streamed_sends_its_text_at_the_end() -> None:
    out = _run([], _view(cache_hit=True))
    deltas = [e for e in out if e["type"] == "response.output_text.delta"]
    assert [e["delta"] for e in deltas] == ["hello there"]
    assert out[1]["type"] == "response.in_progress"
    assert out[-1]["type"] == "response.completed"


def test_a_failed_job_ends_with_response_failed() -> None:
    failed = _view(status="failed", result=None, error={"code": "provider_error", "message": "x"})
    out = _run([_delta(1, "part")], failed)
    assert out[-1]["type"] == "response.failed"
    assert out[-1]["response"]["error"]["code"] == "provider_error"
    incomplete = _view(result={"content": "hello there", "finish_reason": "length"})
    assert _run([], incomplete)[-1]["type"] == "response.incomplete"
