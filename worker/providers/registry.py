"""Which provider serves a `<provider>/<name>` model.

The OpenAI and Anthropic providers are built on first use: importing their SDKs
takes about a second each, which every worker's boot paid (docs/scaling.md)."""

from __future__ import annotations

import threading

from worker.providers.base import Provider, ProviderError
from worker.providers.sim import SimProvider

_PROVIDERS: dict[str, Provider] = {"sim": SimProvider()}
_NAMES = frozenset({"openai", "anthropic", "sim"})
_lock = threading.Lock()


def _build(provider_name: str) -> Provider:
    if provider_name == "openai":
        from worker.providers.openai_provider import OpenAIProvider

        return OpenAIProvider()
    from worker.providers.anthropic_provider import AnthropicProvider

    return AnthropicProvider()


def provider_for(model: str) -> tuple[Provider, str]:
    provider_name, _, name = model.partition("/")
    if provider_name not in _NAMES:
        raise ProviderError(
            "provider_error", f"provider {provider_name!r} is not available", retryable=False
        )
    provider = _PROVIDERS.get(provider_name)
    if provider is None:
        with _lock:
            provider = _PROVIDERS.get(provider_name)
            if provider is None:
                provider = _PROVIDERS[provider_name] = _build(provider_name)
    return provider, name
