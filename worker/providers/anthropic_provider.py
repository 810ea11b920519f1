"""Anthropic through the official SDK (Messages API), SDK retries off.

Structured output goes through a forced tool call whose input schema is the
job's response_schema: the tool input is the JSON object we validate (the tool is
built in aijobs/billing/call_bounds.py, where the reservation counts it).

A chat job that asks for it is streamed (the SDK's message stream): its text deltas, or
with a response_schema the tool input's JSON as it is written, go to on_delta, and the
stream's final Message gives the same Completion as the call unstreamed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from typing import Any

import anthropic
from anthropic.lib.streaming import ParsedMessageStreamEvent

from aijobs.billing.call_bounds import output_cap, structured_tool, structured_tool_choice
from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings
from worker.providers.base import (
    SHAPE_ERRORS,
    Completion,
    OnDelta,
    ProviderError,
    broken_stream,
    connection_limits,
    delta_sink,
    next_item,
    rate_limit_headers,
    unexpected_shape,
)
from worker.providers.usage import from_anthropic

# Passed explicitly: left to itself the SDK reads its own environment variable, where
# an empty value (compose's `${VAR:-}`) would be taken as the base URL.
ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"


@lru_cache
def _client() -> anthropic.AsyncAnthropic:
    settings = get_settings()
    if not settings.anthropic_api_key:
        raise ProviderError(
            "provider_error", "ANTHROPIC_API_KEY is not set on the worker", retryable=False
        )
    return anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url or ANTHROPIC_DEFAULT_BASE_URL,
        max_retries=0,
        http_client=anthropic.DefaultAsyncHttpxClient(limits=connection_limits()),
    )


def message_kwargs(name: str, request: JobRequest) -> dict[str, Any]:
    messages = request.messages or []
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    params = request.params
    kwargs: dict[str, Any] = {
        "model": name,
        "messages": [m.model_dump() for m in messages if m.role != "system"],
        # The cap that was reserved: the client's max_tokens clamped to the model's cap,
        # or the model's cap.
        "max_tokens": output_cap(request, f"anthropic/{name}"),
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
        kwargs["tools"] = [structured_tool(request.response_schema)]
        kwargs["tool_choice"] = structured_tool_choice()
    return kwargs


def message_completion(message: anthropic.types.Message, request: JobRequest) -> Completion:
    """What a Messages answer gave (a single call's, or a provider batch line's)."""
    try:
        content = ""
        for block in message.content:
            if block.type == "tool_use" and request.response_schema is not None:
                content = json.dumps(block.input)
                break
            if block.type == "text":
                content += block.text
        usage = from_anthropic(message.usage)
        return Completion(
            content=content,
            finish_reason=message.stop_reason or "end_turn",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )
    except SHAPE_ERRORS as exc:
        raise unexpected_shape(exc) from exc


class _EventReader:
    """What a message stream's events add to the answer message_completion reads: the
    text deltas, or for structured output the tool input's JSON as it is written; and
    the Message the SDK accumulated, given with the stream's last event."""

    def __init__(self, structured: bool) -> None:
        self.structured = structured
        self.final: anthropic.types.Message | None = None

    def add(self, event: ParsedMessageStreamEvent[Any]) -> str:
        """Take an event in; the text it adds (maybe empty)."""
        try:
            if event.type == "message_stop":
                self.final = event.message
            if event.type != "content_block_delta":
                return ""
            delta = event.delta
            if self.structured:
                return delta.partial_json if delta.type == "input_json_delta" else ""
            return delta.text if delta.type == "text_delta" else ""
        except SHAPE_ERRORS as exc:
            raise unexpected_shape(exc) from exc


async def _streamed_message(
    name: str, request: JobRequest, timeout_s: float, on_delta: OnDelta
) -> Completion:
    reader = _EventReader(structured=request.response_schema is not None)
    manager = _client().messages.stream(**message_kwargs(name, request), timeout=timeout_s)
    async with manager as stream:
        try:
            while (event := await next_item(stream)) is not None:
                text = reader.add(event)
                if text:
                    on_delta(text)
        except anthropic.APIStatusError as exc:
            if exc.status_code >= 300:
                raise  # mapped as it is (worker/providers/errors.py)
            # An error event after the 200 (overloaded_error, say), which the SDK raises
            # with the 200's status: the server failed mid-way.
            raise broken_stream("an error event") from exc
        headers = rate_limit_headers(stream.response.headers)
    if reader.final is None:
        raise broken_stream()
    return replace(message_completion(reader.final, request), headers=headers)


class AnthropicProvider:
    async def run(
        self,
        name: str,
        request: JobRequest,
        timeout_s: float,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        if request.task != "chat":
            raise ProviderError("provider_error", "Anthropic has no embeddings", retryable=False)
        sink = delta_sink(request, on_delta)
        if sink is not None:
            return await _streamed_message(name, request, timeout_s, sink)
        # A raw response: its rate-limit headers pace the next calls (provider quotas).
        raw = await _client().messages.with_raw_response.create(
            **message_kwargs(name, request), timeout=timeout_s
        )
        completion = message_completion(await raw.parse(), request)
        return replace(completion, headers=rate_limit_headers(raw.headers))
