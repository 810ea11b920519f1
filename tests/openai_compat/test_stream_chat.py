"""Streamed chat on the front door (`stream: true`), against the real stack, read by the
official openai SDK: chunks as the provider streams, the cache hit as one chunk, a reset
after text was sent, and the errors before and after the stream starts."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import openai
import psycopg
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import spend_today, unique
from tests.stack import Stack


def _sdk(live: Stack, api_key: str) -> openai.OpenAI:
    # max_retries=0: each test sees the first answer, not the SDK's retry of it.
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=api_key, max_retries=0)


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _content_chunks(chunks: list[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [c for c in chunks if c.choices and c.choices[0].delta.content]


def test_chunks_arrive_as_the_provider_streams(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[chunks:4] [pace:0.3] streamed through")
    raw = _sdk(live, client.api_key).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini",
        messages=_user(message),
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"cache": False},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    job_id = raw.headers["x-aijobs-job-id"]
    arrived: list[tuple[float, ChatCompletionChunk]] = []
    for chunk in raw.parse():
        arrived.append((time.monotonic(), chunk))
    chunks = [chunk for _, chunk in arrived]

    # The deltas came over the provider's ~1.2 s, not all at the end.
    content_times = [t for t, c in arrived if c.choices and c.choices[0].delta.content]
    assert len(content_times) >= 4
    assert arrived[-1][0] - content_times[0] >= 0.6
    assert all(c.id == f"chatcmpl-{job_id}" for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert [c.usage is None for c in chunks[:-1]] == [True] * (len(chunks) - 1)
    assert fake_openai.streamed(message) == [True]

    job = client.wait(job_id)
    assert job["status"] == "succeeded"
    assert _text(chunks) == job["result"]["content"] == f"echo: {message}"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        job["usage"]["input_tokens"],
        job["usage"]["output_tokens"],
    )
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_sim_echo_streams_word_by_word(live: Stack, client: Client) -> None:
    message = unique("one two three four five")
    stream = _sdk(live, client.api_key).chat.completions.create(
        model="sim/echo", messages=_user(message), stream=True, extra_body={"cache": False}
    )
    chunks = list(stream)
    assert len(_content_chunks(chunks)) >= 5
    assert _text(chunks) == message
    assert all(c.usage is None for c in chunks)  # no include_usage: no usage chunk
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_cache_hit_streams_its_result_as_one_chunk(live: Stack, client: Client) -> None:
    sdk = _sdk(live, client.api_key)
    message = unique("asked twice")
    first = sdk.chat.completions.create(model="sim/echo", messages=_user(message))
    raw = sdk.chat.completions.with_raw_response.create(
        model="sim/echo",
        messages=_user(message),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())
    job = client.http.get(f"/v1/jobs/{raw.headers['x-aijobs-job-id']}").json()
    assert job["cache_hit"] is True
    content = _content_chunks(chunks)
    assert len(content) == 1
    assert content[0].choices[0].delta.role == "assistant"
    assert _text(chunks) == message == first.choices[0].message.content
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == job["usage"]["output_tokens"]


def test_reset_after_text_was_sent_ends_with_an_api_error(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    # Every call breaks off after 2 chunks: the text sent cannot be taken back.
    message = unique("[chunks:4] [cut:2] broken stream")
    stream = _sdk(live, client.api_key).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini",
        messages=_user(message),
        stream=True,
        extra_body={"cache": False, "max_attempts": 2},
    )
    job_id = stream.headers["x-aijobs-job-id"]
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream.parse():
            received.append(chunk)
    assert _text(received)  # part of the text came before the error
    assert "mid-stream" in caught.value.message
    assert job_id in caught.value.message
    assert isinstance(caught.value.body, dict) and caught.value.body.get("code")
    job = client.wait(job_id)  # the job went on: retried, then failed
    assert job["status"] == "failed"
    assert len(fake_openai.streamed(message)) == 2


def test_failed_job_streams_an_error_with_its_code(live: Stack, client: Client) -> None:
    message = unique("[status:400] refused upstream")
    stream = _sdk(live, client.api_key).chat.completions.create(
        model="openai/gpt-4o-mini", messages=_user(message), stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "provider_error"


def test_refusals_before_the_stream_are_plain_errors(
    make_client: Callable[..., Client], live: Stack, db: psycopg.Connection[Any]
) -> None:
    client = make_client(daily_budget=Decimal("0.01"))
    spend_today(db, client.tenant, "0.01")
    sdk = _sdk(live, client.api_key)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="sim/echo", messages=_user(unique("over budget")), stream=True
        )
    assert caught.value.status_code == 402
    assert caught.value.code == "budget_exceeded"
    assert caught.value.response.headers["content-type"] == "application/json"
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        sdk.chat.completions.create(
            model="sim/echo", messages=_user("x"), stream=True, extra_body={"n": 2}
        )
    assert invalid.value.code == "unsupported"
    with pytest.raises(openai.UnprocessableEntityError) as options:
        sdk.chat.completions.create(
            model="sim/echo", messages=_user("x"), stream_options={"include_usage": True}
        )
    assert options.value.code == "invalid_request"
