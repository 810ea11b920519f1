"""What every provider returns, and the one error type they raise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx2

from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings


@dataclass(frozen=True)
class Completion:
    content: str
    finish_reason: str
    input_tokens: int  # all of the call's input, its cached and cache-write tokens among them
    output_tokens: int  # all of its output, reasoning tokens among them
    embeddings: list[list[float]] | None = None
    cached_input_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it (Anthropic)
    # The answer's rate-limit headers (worker/rate_headers.py reads them).
    headers: dict[str, str] | None = None


def rate_limit_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """Of a provider's answer headers, those about its quota (and nothing else)."""
    if not headers:
        return None
    kept = {
        str(name).lower(): str(value)
        for name, value in headers.items()
        if "ratelimit" in str(name).lower() or str(name).lower().startswith("retry-after")
    }
    return kept or None


class ProviderError(Exception):
    """A failed provider call, already mapped to one of our error codes."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        http_status: int | None = None,
        unexpected: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.http_status = http_status
        self.unexpected = unexpected  # worth an error report (an answer of an odd shape)
        self.headers = headers  # the answer's rate-limit headers, if it had any


def unexpected_shape(exc: Exception) -> ProviderError:
    """An SDK answer we cannot read (a null message, a missing field): the provider's
    fault, maybe passing, not a crash of ours."""
    return ProviderError(
        "provider_error",
        f"the provider's answer had an unexpected shape ({type(exc).__name__})",
        retryable=True,
        unexpected=True,
    )


# What reading an SDK answer of an odd shape raises.
SHAPE_ERRORS = (AttributeError, TypeError, KeyError, IndexError, ValueError)

T = TypeVar("T")


async def next_item(stream: AsyncIterator[T]) -> T | None:
    """A stream's next event, None at its end. An event the SDK cannot decode (JSON it
    cannot parse, a tool input it cannot accumulate) is an answer of odd shape."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None
    except SHAPE_ERRORS as exc:
        raise unexpected_shape(exc) from exc


def broken_stream(detail: str = "") -> ProviderError:
    """A streamed answer that stopped before its end (the connection closed, or an error
    event came after the 200): transient, like a 5xx, and its text so far is void."""
    said = f" ({detail})" if detail else ""
    return ProviderError(
        "provider_error", f"the provider's stream broke off before its end{said}", retryable=True
    )


# Takes each piece of a streamed answer's text as it arrives: synchronous and quick (it
# only queues the text), so a slow reader never holds up the call.
OnDelta = Callable[[str], None]


def delta_sink(request: JobRequest, on_delta: OnDelta | None) -> OnDelta | None:
    """Where a call's text goes as it arrives, when the call is to be streamed (a chat
    job that asked for it, and a caller that takes the pieces); None: not streamed."""
    return on_delta if request.stream and request.task == "chat" else None


class Provider(Protocol):
    async def run(
        self,
        name: str,
        request: JobRequest,
        timeout_s: float,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        """Make exactly one provider call (no SDK retries) and return its result. A
        streamed call (see delta_sink) hands each non-empty piece of text to on_delta as
        it arrives and returns the same Completion the call unstreamed would."""


def connection_limits() -> httpx2.Limits:
    """One connection per call the worker's loop may have in flight, all kept alive
    (the SDKs' HTTP client is httpx2)."""
    slots = get_settings().worker_concurrency
    return httpx2.Limits(max_connections=slots, max_keepalive_connections=slots)


def estimate_tokens(text: str) -> int:
    """For servers that omit usage: about four characters a token, never zero."""
    return max(1, len(text) // 4)


def request_text(request: JobRequest) -> str:
    if request.messages is not None:
        return "\n".join(message.content for message in request.messages)
    value: Any = request.input
    return "\n".join(value) if isinstance(value, list) else str(value or "")
