"""The one place where provider exceptions become our error codes, with `retryable`."""

from __future__ import annotations

from collections.abc import Mapping

import anthropic
import httpx2
import openai

from worker.providers.base import ProviderError
from worker.retry_policy import retry_after_s

# Transient per HTTP: request timeout, conflict, rate limit, server errors (and 529).
TRANSIENT_STATUS = frozenset({408, 409, 429})
RETRY_AFTER_CAP_S = 300.0


def _capped_retry_after(headers: Mapping[str, str] | None) -> float | None:
    wait = retry_after_s(headers)
    return None if wait is None else min(wait, RETRY_AFTER_CAP_S)


def from_status(status: int, message: str, headers: Mapping[str, str] | None) -> ProviderError:
    if status == 429:
        return ProviderError(
            "provider_rate_limited",
            message,
            retryable=True,
            retry_after_s=_capped_retry_after(headers),
            http_status=status,
        )
    retryable = status in TRANSIENT_STATUS or status >= 500
    return ProviderError(
        "provider_error",
        message,
        retryable=retryable,
        retry_after_s=_capped_retry_after(headers) if retryable else None,
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
