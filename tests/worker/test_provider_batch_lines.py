"""How one line of a provider batch maps to an answer or an error (no I/O): OpenAI's
output and error file lines, Anthropic's result types."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anthropic

from aijobs.jobs.schemas import JobRequest
from worker.provider_batches.anthropic_batches import AnthropicBatches
from worker.provider_batches.openai_batches import OpenAIBatches
from worker.providers.base import Completion, ProviderError

REQUEST = JobRequest.model_validate(
    {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
)


def _chat_line(content: str) -> dict[str, Any]:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    return {"custom_id": "x", "response": {"status_code": 200, "body": body}, "error": None}


def test_an_openai_answer_line_is_a_completion_with_its_cached_tokens() -> None:
    outcome = OpenAIBatches().outcome(_chat_line("hello"), REQUEST)
    assert outcome == Completion(
        content="hello",
        finish_reason="stop",
        input_tokens=10,
        output_tokens=3,
        cached_input_tokens=4,
    )


def test_openai_error_lines() -> None:
    api = OpenAIBatches()
    expired = api.outcome(
        {"custom_id": "x", "response": None, "error": {"code": "batch_expired"}}, REQUEST
    )
    assert isinstance(expired, ProviderError)
    assert (expired.code, expired.retryable) == ("provider_timeout", True)
    server = api.outcome({"custom_id": "x", "response": {"status_code": 500, "body": {}}}, REQUEST)
    assert isinstance(server, ProviderError)
    assert (server.code, server.retryable, server.http_status) == ("provider_error", True, 500)
    refused = api.outcome({"custom_id": "x", "response": {"status_code": 400, "body": {}}}, REQUEST)
    assert isinstance(refused, ProviderError)
    assert (refused.code, refused.retryable) == ("provider_error", False)
    limited = api.outcome({"custom_id": "x", "response": {"status_code": 429, "body": {}}}, REQUEST)
    assert isinstance(limited, ProviderError)
    assert (limited.code, limited.retryable) == ("provider_rate_limited", True)


def test_anthropic_result_types() -> None:
    api = AnthropicBatches()
    message = anthropic.types.Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "hello"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 7, "output_tokens": 2},
        }
    )
    answer = api.outcome(SimpleNamespace(type="succeeded", message=message), REQUEST)
    assert isinstance(answer, Completion)
    assert (answer.content, answer.input_tokens, answer.output_tokens) == ("hello", 7, 2)

    def errored(kind: str) -> Any:
        return SimpleNamespace(
            type="errored", error=SimpleNamespace(error=SimpleNamespace(type=kind))
        )

    transient = api.outcome(errored("api_error"), REQUEST)
    permanent = api.outcome(errored("invalid_request_error"), REQUEST)
    expired = api.outcome(SimpleNamespace(type="expired"), REQUEST)
    canceled = api.outcome(SimpleNamespace(type="canceled"), REQUEST)
    assert isinstance(transient, ProviderError) and transient.retryable
    assert isinstance(permanent, ProviderError) and not permanent.retryable
    assert isinstance(expired, ProviderError) and expired.code == "provider_timeout"
    assert isinstance(canceled, ProviderError) and canceled.retryable
