"""Streamed provider calls, made directly against the fake provider (no API or worker
processes): the text arrives in pieces while the call runs, and the call returns the
same Completion, usage and all, as the call unstreamed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings
from tests.fake_openai import FakeOpenAI
from tests.fake_quota import Quota
from tests.helpers import chat, unique
from worker.providers import anthropic_provider, openai_provider
from worker.providers.base import Completion, OnDelta
from worker.providers.errors import map_exception
from worker.providers.registry import provider_for

OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-haiku-4-5"
BOTH = pytest.mark.parametrize("model", [OPENAI, ANTHROPIC])
TIMEOUT_S = 30.0
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["answer", "note"],
}


class Deltas:
    """An on_delta that keeps each piece of text and when it came."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.times: list[float] = []

    def __call__(self, text: str) -> None:
        self.texts.append(text)
        self.times.append(time.monotonic())


def _fresh_clients() -> None:
    get_settings.cache_clear()
    openai_provider._client.cache_clear()
    anthropic_provider._client.cache_clear()


@pytest.fixture
def fake(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The providers pointed at the fake, with SDK clients of this test's own (each
    test runs its own event loop)."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_openai.root_url)
    monkeypatch.setenv("AIJOBS_SIM_LATENCY_S", "0.6")
    _fresh_clients()
    yield fake_openai
    _fresh_clients()


def request(model: str, content: str, **extra: Any) -> JobRequest:
    return JobRequest.model_validate(chat(content, model=model, **extra))


def run(*calls: tuple[JobRequest, OnDelta | None]) -> list[Completion]:
    """The calls made one after the other in one event loop, as a worker's loop does."""

    async def in_turn() -> list[Completion]:
        done = []
        for job, on_delta in calls:
            provider, name = provider_for(job.model)
            done.append(await provider.run(name, job, TIMEOUT_S, on_delta))
        return done

    return asyncio.run(in_turn())


@BOTH
def test_deltas_arrive_while_the_call_runs_and_make_up_its_content(
    fake: FakeOpenAI, model: str
) -> None:
    message = unique("tell me a short story [pace:0.1]")
    deltas = Deltas()
    [completion] = run((request(model, message, stream=True), deltas))
    returned = time.monotonic()
    assert fake.streamed(message) == [True]
    assert len(deltas.texts) >= 5
    assert "".join(deltas.texts) == completion.content == f"echo: {message}"
    # Four more chunks came 0.1 s apart after the first: it was handed on at once,
    # not when the answer was complete.
    assert returned - deltas.times[0] >= 0.25, deltas.times
    assert deltas.times[-1] - deltas.times[0] >= 0.25, deltas.times


@pytest.mark.parametrize(
    ("model", "directives", "extra"),
    [
        (OPENAI, "[cached:3] [reasoning:2]", {}),
        (OPENAI, "[long:40000]", {"params": {"max_tokens": 50}}),
        (OPENAI, "[bytes] [chunks:3]", {}),
        (ANTHROPIC, "[cached:2] [cache_write:3]", {}),
        (ANTHROPIC, "[long:40000]", {"params": {"max_tokens": 50}}),
        (ANTHROPIC, "[bytes] [chunks:3]", {}),
    ],
)
def test_a_streamed_call_has_the_usage_of_the_unstreamed_one(
    fake: FakeOpenAI, model: str, directives: str, extra: dict[str, Any]
) -> None:
    message = unique(f"one two three four five {directives}")
    deltas = Deltas()
    plain, streamed = run(
        (request(model, message, **extra), None),
        (request(model, message, stream=True, **extra), deltas),
    )
    assert fake.streamed(message) == [False, True]
    assert len(deltas.texts) >= 3 and "".join(deltas.texts) == streamed.content
    assert streamed == plain
    # And the directive did change the usage (the comparison is not of defaults).
    if "[cached" in directives:
        assert plain.cached_input_tokens > 0
    if "[cache_write" in directives:
        assert plain.cache_write_tokens == 3
    if "[long" in directives:
        assert (plain.output_tokens, plain.finish_reason) == (
            50,
            "length" if model == OPENAI else "max_tokens",
        )
    if "[bytes]" in directives:
        assert plain.input_tokens > len(message.split())


@BOTH
def test_structured_output_streams_and_gives_the_unstreamed_content(
    fake: FakeOpenAI, model: str
) -> None:
    answer = {"answer": 42, "note": "streamed in parts"}
    message = unique(f"[reply:{json.dumps(answer)}]")
    deltas = Deltas()
    plain, streamed = run(
        (request(model, message, response_schema=SCHEMA), None),
        (request(model, message, response_schema=SCHEMA, stream=True), deltas),
    )
    assert fake.streamed(message) == [False, True]
    assert streamed == plain
    assert json.loads(streamed.content) == answer
    # The JSON came in pieces (the tool input's, on Anthropic) that make it up.
    assert len(deltas.texts) >= 3 and "".join(deltas.texts) == streamed.content


def test_a_streamed_call_returns_the_rate_limit_headers(fake: FakeOpenAI) -> None:
    model = "openai/gpt-4o"  # the quota is on this model alone
    message = unique("how much is left")
    fake.quota = Quota("gpt-4o", requests=100, tokens=10_000_000)
    try:
        plain, streamed = run(
            (request(model, message), None),
            (request(model, message, stream=True), Deltas()),
        )
    finally:
        fake.quota = None
    assert fake.streamed(message) == [False, True]
    assert streamed.headers is not None and plain.headers is not None
    assert streamed.headers.keys() == plain.headers.keys()
    assert streamed.headers["x-ratelimit-remaining-requests"] == "98"


@BOTH
def test_a_stream_cut_midway_is_a_retryable_error(fake: FakeOpenAI, model: str) -> None:
    message = unique("one two three four five [cut:2]")
    deltas = Deltas()
    with pytest.raises(Exception) as raised:
        run((request(model, message, stream=True), deltas))
    error = map_exception(raised.value)
    assert (error.code, error.retryable) == ("provider_error", True), raised.value
    assert deltas.texts == ["echo: ", "one "]  # what came before the cut


@BOTH
def test_a_call_is_streamed_only_when_the_job_asks_and_a_caller_takes_the_text(
    fake: FakeOpenAI, model: str
) -> None:
    message = unique("not streamed [chunks:4]")
    deltas = Deltas()
    unasked, untaken = run(
        (request(model, message), deltas),
        (request(model, message, stream=True), None),
    )
    assert fake.streamed(message) == [False, False]
    assert deltas.texts == []
    assert unasked == untaken and unasked.content == f"echo: {message}"


def test_sim_streams_its_reply_word_by_word(fake: FakeOpenAI) -> None:
    model = "sim/echo"
    message = "the  quick brown fox jumps"  # two spaces: the pieces keep them
    deltas = Deltas()
    plain, streamed = run(
        (request(model, message), None),
        (request(model, message, stream=True), deltas),
    )
    returned = time.monotonic()
    assert streamed == plain
    assert deltas.texts == ["the  ", "quick ", "brown ", "fox ", "jumps"]
    # The 0.6 s of latency spread over five words: the first came well before the end.
    assert returned - deltas.times[0] >= 0.3, deltas.times
    capped = Deltas()
    [cut] = run((request(model, message, stream=True, params={"max_tokens": 2}), capped))
    assert (cut.content, cut.finish_reason) == ("the quick", "length")
    assert capped.texts == ["the ", "quick"]
