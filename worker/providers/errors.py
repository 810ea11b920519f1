"""The one place where provider exceptions become our error codes, with `retryable`.

The message a tenant reads is ours: the HTTP status, and the provider's short error
code when it gives one. An SDK's exception text is not copied into it: it can carry a
provider's response body (our organisation's ids and limits, echoes of input), the
base URL of a private gateway, or paths. The log gets the exception's type, status,
code and request id (never its text, which can quote a prompt)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import httpx2

from worker.providers.base import ProviderError, rate_limit_headers
from worker.retry_policy import retry_after_s

# Transient per HTTP: request timeout, conflict, rate limit, server errors (and 529).
TRANSIENT_STATUS = frozenset({408, 409, 429})
RETRY_AFTER_CAP_S = 300.0
# A provider's error code worth passing on: a short identifier, nothing free-form.
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

log = logging.getLogger("aijobs.worker")


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
            headers=rate_limit_headers(headers),
        )
    retryable = status in TRANSIENT_STATUS or status >= 500
    return ProviderError(
        "provider_error",
        message,
        retryable=retryable,
        retry_after_s=_capped_retry_after(headers) if retryable else None,
        http_status=status,
        headers=rate_limit_headers(headers),
    )


# The provider SDKs are imported by their providers on first use (worker/providers/
# registry.py): each takes about a second to import, and a worker that never calls a
# provider should not boot slower for it. An SDK that was never imported cannot have
# raised, so only the loaded ones' exception classes are looked at.
_SDKS = ("openai", "anthropic")
_SDK_ERROR = {"openai": "OpenAIError", "anthropic": "AnthropicError"}


def _sdk_classes(name: str) -> tuple[type[BaseException], ...]:
    """The exception class `name` of each provider SDK loaded so far."""
    loaded = (sys.modules.get(sdk) for sdk in _SDKS)
    return tuple(getattr(module, name) for module in loaded if module is not None)


def _sdk_base_classes() -> tuple[type[BaseException], ...]:
    loaded = ((sdk, sys.modules.get(sdk)) for sdk in _SDKS)
    return tuple(getattr(module, _SDK_ERROR[sdk]) for sdk, module in loaded if module is not None)


def _provider_code(exc: Any) -> str | None:
    """The provider's own short error code (OpenAI `error.code` or `error.type`,
    Anthropic `error.type`), if it is an identifier."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        return None
    for key in ("code", "type"):
        value = body.get(key)
        if isinstance(value, str) and _CODE.fullmatch(value):
            return value
    return None


def map_exception(exc: BaseException) -> ProviderError:
    """Map an SDK or transport exception to a ProviderError whose message is ours."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, (*_sdk_classes("APITimeoutError"), httpx2.TimeoutException)):
        return ProviderError(
            "provider_timeout", "the provider did not answer in time", retryable=True
        )
    if isinstance(exc, _sdk_classes("APIStatusError")):
        status: Any = exc
        code = _provider_code(status)
        log.warning(
            "provider answered HTTP %s (%s, code %s, request id %s)",
            status.status_code,
            type(exc).__name__,
            code,
            getattr(exc, "request_id", None),
        )
        said = f" ({code})" if code else ""
        return from_status(
            status.status_code,
            f"the provider answered HTTP {status.status_code}{said}",
            status.response.headers,
        )
    if isinstance(exc, (*_sdk_classes("APIConnectionError"), httpx2.TransportError)):
        cause = exc.__cause__ or exc.__context__
        log.warning(
            "connection to the provider failed (%s, caused by %s)",
            type(exc).__name__,
            type(cause).__name__ if cause else None,
        )
        return ProviderError(
            "provider_error", "the connection to the provider failed", retryable=True
        )
    if isinstance(exc, _sdk_base_classes()):
        log.warning("the provider's SDK failed (%s)", type(exc).__name__)
        return ProviderError(
            "provider_error",
            f"the provider call failed ({type(exc).__name__})",
            retryable=False,
        )
    # The caller logs this one with its traceback (an internal error is ours to fix).
    return ProviderError(
        "internal", "an internal error in the worker; it has been logged", retryable=False
    )
