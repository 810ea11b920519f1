"""The translation between OpenAI's shapes and aijobs jobs (no server needed)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from aijobs.errors import InvalidRequest, Unsupported
from aijobs.jobs import openai_shapes


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "sim/echo", "messages": [{"role": "user", "content": "hi"}], **extra}


def _view(**extra: Any) -> dict[str, Any]:
    return {
        "id": "0b7e0a48-6a38-4c2b-9a57-0b1f6f6c2f10",
        "status": "succeeded",
        "model": "openai/gpt-4o-mini",
        "answered_by": "openai/gpt-4o-mini",
        "created_at": "2026-12-07T10:00:00+00:00",
        "result": {"content": "hello", "parsed": None, "embeddings": None, "finish_reason": "stop"},
        "error": None,
        "usage": {"input_tokens": 7, "output_tokens": 3},
        **extra,
    }


def test_chat_body_becomes_a_chat_job() -> None:
    request = openai_shapes.chat_job_request(
        _chat(
            messages=[
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "hi", "name": None},
            ],
            temperature=0.2,
            top_p=0.9,
            max_completion_tokens=40,
            stop=["\n"],
            seed=7,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
            },
            n=1,
            stream=False,
            user="someone",
            metadata={"team": "a"},
            max_attempts=2,
            timeout_s=5,
            cache=False,
            priority="batch",
        )
    )
    assert request.task == "chat"
    assert [(m.role, m.content) for m in request.messages or []] == [
        ("system", "be brief"),
        ("user", "hi"),
    ]
    params = request.params
    assert (params.temperature, params.top_p, params.max_tokens) == (0.2, 0.9, 40)
    assert (params.stop, params.seed) == (["\n"], 7)
    assert request.response_schema == {"type": "object"}
    assert request.metadata == {"team": "a"}
    assert (request.max_attempts, request.timeout_s, request.cache) == (2, 5, False)
    assert request.priority == "batch"


def test_json_object_asks_for_an_object() -> None:
    request = openai_shapes.chat_job_request(_chat(response_format={"type": "json_object"}))
    assert request.response_schema == {"type": "object"}
    assert (
        openai_shapes.chat_job_request(_chat(response_format={"type": "text"})).response_schema
        is None
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "required"},
        {"logprobs": True},
        {"frequency_penalty": 0.5},
        {"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    ],
)
def test_what_a_job_cannot_honour_is_unsupported(extra: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        openai_shapes.chat_job_request(_chat(**extra))


def test_defaults_of_unsupported_fields_pass() -> None:
    body = _chat(
        n=1, stream=False, tools=[], logprobs=False, frequency_penalty=0, tool_choice="none"
    )
    assert openai_shapes.chat_job_request(body).model == "sim/echo"


@pytest.mark.parametrize(
    "body",
    [
        _chat(foo=1),
        _chat(temperature=3),
        _chat(max_tokens=5, max_completion_tokens=6),
        _chat(messages=[{"role": "robot", "content": "x"}]),
        _chat(messages=[]),
        _chat(response_format={"type": "xml"}),
        {"messages": [{"role": "user", "content": "x"}]},
    ],
)
def test_bad_input_is_invalid_request(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        openai_shapes.chat_job_request(body)


def test_embeddings_body_becomes_an_embed_job() -> None:
    request = openai_shapes.embedding_job_request(
        {
            "model": "sim/embed",
            "input": ["a", "b"],
            "encoding_format": "float",
            "metadata": {"k": "v"},
        }
    )
    assert (request.task, request.input, request.metadata) == ("embed", ["a", "b"], {"k": "v"})
    with pytest.raises(Unsupported):
        openai_shapes.embedding_job_request({"model": "sim/embed", "input": [[1, 2]]})
    with pytest.raises(Unsupported):
        openai_shapes.embedding_job_request({"model": "sim/embed", "input": "a", "dimensions": 4})
    with pytest.raises(InvalidRequest):
        openai_shapes.embedding_job_request({"model": "sim/embed", "input": "a", "bogus": 1})


def test_chat_completion_object() -> None:
    completion = openai_shapes.chat_completion(_view())
    assert completion == {
        "id": "chatcmpl-0b7e0a48-6a38-4c2b-9a57-0b1f6f6c2f10",
        "object": "chat.completion",
        "created": 1796637600,
        "model": "openai/gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        "system_fingerprint": None,
    }


def test_anthropic_finish_reasons_in_openai_words() -> None:
    result = {"content": "x", "finish_reason": "max_tokens"}
    completion = openai_shapes.chat_completion(_view(result=result))
    assert completion["choices"][0]["finish_reason"] == "length"


def test_embedding_list_float_and_base64() -> None:
    result = {"content": "", "embeddings": [[0.5, 1.0], [0.25, 0.0]], "finish_reason": "stop"}
    listed = openai_shapes.embedding_list(
        _view(result=result, usage={"input_tokens": 4, "output_tokens": 0})
    )
    assert listed["object"] == "list"
    assert listed["data"][1] == {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]}
    assert listed["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    packed = openai_shapes.embedding_list(_view(result=result), "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, 1.0)


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("provider_error", 502, "server_error"),
        ("provider_timeout", 504, "server_error"),
        ("budget_exceeded", 402, "insufficient_quota"),
        ("provider_rate_limited", 429, "rate_limit_error"),
        ("check_failed", 422, "invalid_request_error"),
        ("something_new", 500, "server_error"),
    ],
)
def test_job_errors_map_to_statuses(code: str, status: int, kind: str) -> None:
    error = {"code": code, "message": "boom", "retryable": False}
    got_status, body = openai_shapes.job_error(_view(status="failed", result=None, error=error))
    assert got_status == status
    assert body["error"]["code"] == code
    assert body["error"]["type"] == kind
    assert "boom" in body["error"]["message"]


def test_chat_chunks() -> None:
    chunk = openai_shapes.chat_chunk(_view(), "sim/echo", {"content": "x"}, None, True)
    assert chunk == {
        "id": "chatcmpl-0b7e0a48-6a38-4c2b-9a57-0b1f6f6c2f10",
        "object": "chat.completion.chunk",
        "created": 1796637600,
        "model": "sim/echo",
        "system_fingerprint": None,
        "choices": [
            {"index": 0, "delta": {"content": "x"}, "logprobs": None, "finish_reason": None}
        ],
        "usage": None,
    }
    last = openai_shapes.chat_usage_chunk(_view())
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert "usage" not in openai_shapes.chat_chunk(_view(), "m", {})


def test_chat_stream_options() -> None:
    body = {"model": "sim/echo", "messages": [{"role": "user", "content": "x"}]}
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    assert openai_shapes.chat_job_request(streamed).stream is True
    assert openai_shapes.include_usage(streamed) is True
    assert openai_shapes.chat_job_request(body).stream is False
    for bad in (
        {**body, "stream_options": {"include_usage": True}},
        {**body, "stream": True, "stream_options": {"nope": True}},
        {**body, "stream": "yes"},
    ):
        with pytest.raises(InvalidRequest):
            openai_shapes.chat_job_request(bad)
