"""The front door against the real stack, driven by the official openai SDK: answers,
options, and the SDK's own exceptions for aijobs' errors."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import openai
import psycopg
import pytest

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import spend_today, unique
from tests.stack import Stack


def _sdk(live: Stack, api_key: str, **options: Any) -> openai.OpenAI:
    # max_retries=0: each test sees the first answer, not the SDK's retry of it.
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=api_key, **options)


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_chat_completion_runs_as_a_job(live: Stack, client: Client) -> None:
    message = unique("hello front door")
    raw = _sdk(live, client.api_key).chat.completions.with_raw_response.create(
        model="sim/echo",
        messages=_user(message),
        max_tokens=100,
        extra_body={"metadata": {"origin": "sdk"}, "max_attempts": 2, "timeout_s": 30},
    )
    completion = raw.parse()
    job_id = raw.headers["x-aijobs-job-id"]
    assert completion.id == f"chatcmpl-{job_id}"
    assert completion.object == "chat.completion"
    assert completion.model == "sim/echo"
    choice = completion.choices[0]
    assert (choice.index, choice.message.role) == (0, "assistant")
    assert choice.message.content == message
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    job = client.http.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert job["metadata"] == {"origin": "sdk"}
    assert job["result"]["content"] == message
    assert (job["usage"]["input_tokens"], job["usage"]["output_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_embeddings_run_as_a_job(live: Stack, client: Client) -> None:
    texts = [unique("one"), unique("two")]
    raw = _sdk(live, client.api_key).embeddings.with_raw_response.create(
        model="sim/embed", input=texts
    )
    listed = raw.parse()
    assert listed.object == "list"
    assert [item.index for item in listed.data] == [0, 1]
    assert all(item.object == "embedding" and len(item.embedding) == 8 for item in listed.data)
    assert listed.data[0].embedding != listed.data[1].embedding
    assert listed.model == "sim/embed"
    job = client.http.get(f"/v1/jobs/{raw.headers['x-aijobs-job-id']}").json()
    assert job["task"] == "embed"
    # The SDK asks for base64 (float32s) and decodes it: equal to float32 precision.
    for stored, item in zip(job["result"]["embeddings"], listed.data, strict=True):
        assert item.embedding == pytest.approx(stored, rel=1e-6)


def test_real_provider_path_through_the_fake(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("via the provider")
    completion = _sdk(live, client.api_key).chat.completions.create(
        model="openai/gpt-4o-mini", messages=_user(message), temperature=0
    )
    assert completion.choices[0].message.content == f"echo: {message}"  # the fake's reply
    assert fake_openai.count(message) == 1


def test_failed_job_is_a_502_the_sdk_does_not_retry(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[status:400] refused upstream")
    # The SDK's default retries: the answer's x-should-retry: false stops them (the
    # job already ran its own attempts).
    sdk = _sdk(live, client.api_key, max_retries=2)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=_user(message))
    error = caught.value
    assert error.status_code == 502
    assert error.code == "provider_error"
    assert error.response.headers["x-should-retry"] == "false"
    job = client.http.get(f"/v1/jobs/{error.response.headers['x-aijobs-job-id']}").json()
    assert (job["status"], job["error"]["code"]) == ("failed", "provider_error")
    assert fake_openai.count(message) == 1  # a 400 is not retried, by aijobs or the SDK


def test_wrong_key_is_authentication_error(live: Stack) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        _sdk(live, "not-a-key").chat.completions.create(model="sim/echo", messages=_user("x"))
    assert caught.value.code == "unauthorized"
    assert caught.value.type == "authentication_error"


def test_spent_budget_is_402_budget_exceeded(
    make_client: Callable[..., Client], live: Stack, db: psycopg.Connection[Any]
) -> None:
    client = make_client(daily_budget=Decimal("0.01"))
    spend_today(db, client.tenant, "0.01")
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(live, client.api_key).chat.completions.create(
            model="sim/echo", messages=_user(unique("over budget"))
        )
    assert caught.value.status_code == 402
    assert caught.value.code == "budget_exceeded"
    assert caught.value.response.headers["content-type"] == "application/json"


def test_rpm_is_rate_limit_error_with_retry_after(
    make_client: Callable[..., Client], live: Stack
) -> None:
    client = make_client(rpm=1)
    sdk = _sdk(live, client.api_key)
    sdk.embeddings.create(model="sim/embed", input=unique("first"))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.embeddings.create(model="sim/embed", input=unique("second"))
    assert caught.value.code == "rate_limited"
    assert int(caught.value.response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"not_a_field": 1}, "invalid_request"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "unsupported"),
        ({"model": "nobody/model"}, "unknown_model"),
        ({"max_attempts": 0}, "invalid_request"),
    ],
)
def test_refused_bodies_are_422_in_openai_shape(
    live: Stack, client: Client, extra: dict[str, Any], code: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        _sdk(live, client.api_key).chat.completions.create(
            model="sim/echo", messages=_user("x"), extra_body=extra
        )
    assert caught.value.code == code
    body = caught.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "code"}


def test_idempotency_key_answers_the_same_job(live: Stack, client: Client) -> None:
    sdk = _sdk(live, client.api_key)
    key = {"Idempotency-Key": unique("key")}
    message = unique("once")
    first = sdk.chat.completions.with_raw_response.create(
        model="sim/echo", messages=_user(message), extra_headers=key, extra_body={"cache": False}
    )
    again = sdk.chat.completions.with_raw_response.create(
        model="sim/echo", messages=_user(message), extra_headers=key, extra_body={"cache": False}
    )
    assert first.headers["x-aijobs-job-id"] == again.headers["x-aijobs-job-id"]
    assert again.parse().choices[0].message.content == message


def test_other_routes_keep_problem_json(live: Stack) -> None:
    response = httpx.post(f"{live.base_url}/v1/jobs", json={}, timeout=30)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    front = httpx.post(f"{live.base_url}/v1/chat/completions", json={}, timeout=30)
    assert front.status_code == 401
    assert front.json()["error"]["code"] == "unauthorized"
