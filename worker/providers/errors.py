"""The one place where provider exceptions become our error codes, with `retryable`."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import anthropic
import httpx2
import openai

from worker.providers.base import ProviderError

# Transient per HTTP: request timeout, conflict, rate limit, server errors (and 529).
TRANSIENT_STATUS = frozenset({408, 409, 429})
RETRY_AFTER_CAP_S = 300.0


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After (seconds or HTTP date) or retry-after-ms, capped."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return min(float(millis) / 1000, RETRY_AFTER_CAP_S)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP_S)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return min(max(parsed.timestamp() - time.time(), 0.0), RETRY_AFTER_CAP_S)


def from_status(status: int, message: str, headers: Mapping[str, str] | None) -> ProviderError:
    if status == 429:
        return ProviderError(
            "provider_rate_limited",
            message,
            retryable=True,
            retry_after_s=retry_after_seconds(headers),
            http_status=status,
        )
    retryable = status in TRANSIENT_STATUS or status >= 500
    return ProviderError(
        "provider_error",
        message,
        retryable=retryable,
        retry_after_s=retry_after_seconds(headers) if retryable else None,
        http_status=status,
    )


def map_exception(exc: BaseException) -> ProviderError:
    """Map an SDK or transport exception to a ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(
        exc, openai.APITimeoutError | anthropic.APITimeoutError | httpx2.TimeoutException
    ):
        return ProviderError(
            "provider_timeout", "the provider did not answer in time", retryable=True
        )
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return from_status(
            exc.status_code,
            f"provider answered HTTP {exc.status_code}: {exc.message}"[:1000],
            exc.response.headers,
        )
    if isinstance(
        exc, openai.APIConnectionError | anthropic.APIConnectionError | httpx2.TransportError
    ):
        return ProviderError(
            "provider_error", f"connection to the provider failed: {exc}", retryable=True
        )
    if isinstance(exc, openai.OpenAIError | anthropic.AnthropicError):
        return ProviderError("provider_error", str(exc)[:1000], retryable=False)
    return ProviderError("internal", f"{type(exc).__name__}: {exc}"[:1000], retryable=False)
