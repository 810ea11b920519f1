"""OpenAI and any OpenAI-compatible server, through the official SDK (Chat Completions,
Embeddings). The SDK's own retries are off: every call is one recorded attempt. A chat
job that asks for it is streamed, its usage read from the stream's last chunk."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

import openai

from aijobs.billing.call_bounds import cap_param, output_cap, response_format
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
    estimate_tokens,
    next_item,
    rate_limit_headers,
    request_text,
    unexpected_shape,
)
from worker.providers.usage import Usage, from_openai

# Passed explicitly: left to itself the SDK reads its own environment variable, where
# an empty value (compose's `${VAR:-}`) would be taken as the base URL.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


@lru_cache
def _client() -> openai.AsyncOpenAI:
    settings = get_settings()
    if not settings.openai_api_key:
        raise ProviderError(
            "provider_error", "OPENAI_API_KEY is not set on the worker", retryable=False
        )
    return openai.AsyncOpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url or OPENAI_DEFAULT_BASE_URL,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=connection_limits()),
    )


def chat_kwargs(name: str, request: JobRequest) -> dict[str, Any]:
    model = f"openai/{name}"
    kwargs: dict[str, Any] = {
        "model": name,
        "messages": [message.model_dump() for message in request.messages or []],
    }
    kwargs.update(request.params.model_dump(exclude_none=True, exclude={"max_tokens"}))
    # Always the cap that was reserved (the client's max_tokens clamped to the model's
    # cap, or the model's cap): without it the answer's length, and so its cost, has
    # no bound.
    kwargs[cap_param(model)] = output_cap(request, model)
    if request.response_schema is not None:
        kwargs["response_format"] = response_format(request.response_schema)
    return kwargs


def embed_kwargs(name: str, request: JobRequest) -> dict[str, Any]:
    inputs = request.input if isinstance(request.input, list) else [request.input or ""]
    return {"model": name, "input": inputs}


def embeddings_completion(
    embedded: openai.types.CreateEmbeddingResponse, request: JobRequest
) -> Completion:
    """What an Embeddings answer gave (a single call's, or a provider batch line's)."""
    try:
        ordered = sorted(embedded.data, key=lambda d: d.index)
        vectors = [[float(x) for x in item.embedding] for item in ordered]
        usage = embedded.usage
        tokens = usage.prompt_tokens if usage else estimate_tokens(request_text(request))
    except SHAPE_ERRORS as exc:
        raise unexpected_shape(exc) from exc
    return Completion(
        content="",
        finish_reason="stop",
        input_tokens=tokens,
        output_tokens=0,
        embeddings=vectors,
    )


def chat_completion(response: openai.types.chat.ChatCompletion, request: JobRequest) -> Completion:
    """What a Chat Completions answer gave (a single call's, or a provider batch line's)."""
    if not response.choices:
        raise ProviderError("provider_error", "the provider returned no choices", retryable=True)
    try:
        choice = response.choices[0]
        content = str(choice.message.content or "")
        if response.usage is not None:
            counted = from_openai(response.usage)
        else:
            counted = Usage(estimate_tokens(request_text(request)), estimate_tokens(content))
    except SHAPE_ERRORS as exc:
        raise unexpected_shape(exc) from exc
    return Completion(
        content=content,
        finish_reason=choice.finish_reason or "stop",
        input_tokens=counted.input_tokens,
        output_tokens=counted.output_tokens,
        cached_input_tokens=counted.cached_input_tokens,
    )


class _ChunkReader:
    """What a streamed Chat Completions answer adds up to, one chunk at a time: the
    first choice's text and finish reason, and the usage of the last chunk (sent with
    no choices when the request asks for it)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Any = None

    def add(self, chunk: openai.types.chat.ChatCompletionChunk) -> str:
        """Take a chunk in; its text (maybe empty)."""
        try:
            if chunk.usage is not None:
                self.usage = chunk.usage
            text = ""
            for choice in chunk.choices:
                if choice.index == 0:
                    text = (choice.delta.content if choice.delta is not None else None) or ""
                    self.finish_reason = choice.finish_reason or self.finish_reason
        except SHAPE_ERRORS as exc:
            raise unexpected_shape(exc) from exc
        if text:
            self.parts.append(text)
        return text

    def completion(self, request: JobRequest) -> Completion:
        if self.finish_reason is None:
            raise broken_stream()
        content = "".join(self.parts)
        try:
            if self.usage is not None:
                counted = from_openai(self.usage)
            else:
                counted = Usage(estimate_tokens(request_text(request)), estimate_tokens(content))
        except SHAPE_ERRORS as exc:
            raise unexpected_shape(exc) from exc
        return Completion(
            content=content,
            finish_reason=self.finish_reason,
            input_tokens=counted.input_tokens,
            output_tokens=counted.output_tokens,
            cached_input_tokens=counted.cached_input_tokens,
        )


async def _streamed_chat(
    client: openai.AsyncOpenAI,
    name: str,
    request: JobRequest,
    timeout_s: float,
    on_delta: OnDelta,
) -> Completion:
    raw = await client.chat.completions.with_raw_response.create(
        **chat_kwargs(name, request),
        stream=True,
        stream_options={"include_usage": True},
        timeout=timeout_s,
    )
    stream = raw.parse()
    if not isinstance(stream, openai.AsyncStream):
        raise unexpected_shape(TypeError("the answer to a streamed call was not a stream"))
    reader = _ChunkReader()
    async with stream:
        try:
            while (chunk := await next_item(stream)) is not None:
                text = reader.add(chunk)
                if text:
                    on_delta(text)
        except (openai.APIStatusError, openai.APIConnectionError):
            raise  # mapped as they are (worker/providers/errors.py)
        except openai.APIError as exc:
            # An error event after the 200: the server failed mid-way.
            raise broken_stream("an error event") from exc
    completion = reader.completion(request)
    return replace(completion, headers=rate_limit_headers(raw.headers))


class OpenAIProvider:
    async def run(
        self,
        name: str,
        request: JobRequest,
        timeout_s: float,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        client = _client()
        sink = delta_sink(request, on_delta)
        if sink is not None:
            return await _streamed_chat(client, name, request, timeout_s, sink)
        # Raw responses: their rate-limit headers pace the next calls (provider quotas).
        if request.task == "embed":
            raw_embedded = await client.embeddings.with_raw_response.create(
                **embed_kwargs(name, request), timeout=timeout_s
            )
            completion = embeddings_completion(raw_embedded.parse(), request)
            return replace(completion, headers=rate_limit_headers(raw_embedded.headers))
        raw = await client.chat.completions.with_raw_response.create(
            **chat_kwargs(name, request), timeout=timeout_s
        )
        completion = chat_completion(raw.parse(), request)
        return replace(completion, headers=rate_limit_headers(raw.headers))
