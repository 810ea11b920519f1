"""Sentry, when SENTRY_DSN is set: errors tagged with job, tenant, model and attempt;
prompts, results, API keys and webhook secrets scrubbed unless the operator opts in
(AIJOBS_SENTRY_SEND_PROMPTS=true for prompts and results; keys and secrets always)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aijobs.settings import Settings

SECRET = re.compile(r"(aj_[A-Za-z0-9_-]{10,}|whsec_[A-Za-z0-9+/=]{10,}|Bearer\s+\S+)")
PROMPT_KEYS = {"messages", "input", "content", "result", "request", "prompt", "parsed"}
SECRET_KEYS = {"authorization", "api_key", "webhook_secret", "cookie", "x-api-key"}


def _scrub(value: Any, send_prompts: bool) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            lowered = str(key).lower()
            if lowered in SECRET_KEYS or (lowered in PROMPT_KEYS and not send_prompts):
                out[key] = "[scrubbed]"
            else:
                out[key] = _scrub(item, send_prompts)
        return out
    if isinstance(value, list):
        return [_scrub(item, send_prompts) for item in value]
    if isinstance(value, str):
        return SECRET.sub("[scrubbed]", value)
    return value


def before_send(event: dict[str, Any], send_prompts: bool) -> dict[str, Any]:
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
    scrubbed: dict[str, Any] = _scrub(event, send_prompts)
    return scrubbed


def init(settings: Settings, *, component: str) -> None:
    if not settings.sentry_dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.anthropic import AnthropicIntegration
    from sentry_sdk.integrations.openai import OpenAIIntegration

    send_prompts = settings.sentry_send_prompts
    sentry_sdk.init(
        # The SDK integrations would report every provider 4xx as an error (an expected
        # outcome here) and record prompts: our own mapping decides what is an error.
        disabled_integrations=[OpenAIIntegration(), AnthropicIntegration()],
        dsn=settings.sentry_dsn,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=0,
        before_send=lambda event, hint: before_send(dict(event), send_prompts),  # type: ignore[arg-type,return-value]
        before_breadcrumb=lambda crumb, hint: _scrub(crumb, send_prompts),
    )
    sentry_sdk.set_tag("component", component)


@contextmanager
def job_scope(**tags: str) -> Iterator[None]:
    """Everything reported inside carries these tags (job id, tenant, model, attempt)."""
    import sentry_sdk

    if not sentry_sdk.is_initialized():
        yield
        return
    with sentry_sdk.isolation_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        yield
