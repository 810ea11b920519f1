"""Anthropic through the official SDK (Messages API), SDK retries off.

Structured output goes through a forced tool call whose input schema is the
job's response_schema: the tool input is the JSON object we validate.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import anthropic

from aijobs.billing.pricing import price_for
from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings
from worker.providers.base import (
    SHAPE_ERRORS,
    Completion,
    ProviderError,
    connection_limits,
    unexpected_shape,
)

TOOL_NAME = "respond"


@lru_cache
def _client() -> anthropic.AsyncAnthropic:
    settings = get_settings()
    if not settings.anthropic_api_key:
        raise ProviderError(
            "provider_error", "ANTHROPIC_API_KEY is not set on the worker", retryable=False
        )
    return anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        max_retries=0,
        http_client=anthropic.DefaultAsyncHttpxClient(limits=connection_limits()),
    )


def _kwargs(name: str, request: JobRequest) -> dict[str, Any]:
    messages = request.messages or []
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    params = request.params
    kwargs: dict[str, Any] = {
        "model": name,
        "messages": [m.model_dump() for m in messages if m.role != "system"],
        # Anthropic requires max_tokens; default to the model's cap from the price table.
        "max_tokens": params.max_tokens or price_for(f"anthropic/{name}").max_output_tokens,
    }
    if system:
        kwargs["system"] = system
    if params.temperature is not None:
        kwargs["temperature"] = min(params.temperature, 1.0)
    if params.top_p is not None:
        kwargs["top_p"] = params.top_p
    if params.stop is not None:
        kwargs["stop_sequences"] = [params.stop] if isinstance(params.stop, str) else params.stop
    if request.response_schema is not None:
        kwargs["tools"] = [
            {
                "name": TOOL_NAME,
                "description": "Return the answer as this JSON object.",
                "input_schema": request.response_schema,
            }
        ]
        kwargs["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
    return kwargs


class AnthropicProvider:
    async def run(self, name: str, request: JobRequest, timeout_s: float) -> Completion:
        if request.task != "chat":
            raise ProviderError("provider_error", "Anthropic has no embeddings", retryable=False)
        message = await _client().messages.create(**_kwargs(name, request), timeout=timeout_s)
        try:
            content = ""
            for block in message.content:
                if block.type == "tool_use" and request.response_schema is not None:
                    content = json.dumps(block.input)
                    break
                if block.type == "text":
                    content += block.text
            return Completion(
                content=content,
                finish_reason=message.stop_reason or "end_turn",
                input_tokens=int(message.usage.input_tokens),
                output_tokens=int(message.usage.output_tokens),
            )
        except SHAPE_ERRORS as exc:
            raise unexpected_shape(exc) from exc
