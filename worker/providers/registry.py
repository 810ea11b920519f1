"""Which provider serves a `<provider>/<name>` model."""

from __future__ import annotations

from worker.providers.anthropic_provider import AnthropicProvider
from worker.providers.base import Provider, ProviderError
from worker.providers.openai_provider import OpenAIProvider
from worker.providers.sim import SimProvider

_PROVIDERS: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "anthropic": AnthropicProvider(),
    "sim": SimProvider(),
}


def provider_for(model: str) -> tuple[Provider, str]:
    provider_name, _, name = model.partition("/")
    provider = _PROVIDERS.get(provider_name)
    if provider is None:
        raise ProviderError(
            "provider_error", f"provider {provider_name!r} is not available", retryable=False
        )
    return provider, name
