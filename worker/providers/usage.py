"""The providers' token counts in one convention: input counts ALL the call's input
tokens, the cached and cache-write ones among them (OpenAI's prompt_tokens); output
counts all its output, reasoning tokens among them (OpenAI's completion_tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0  # of input_tokens, read from the prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it


def _count(value: Any) -> int:
    return int(value) if value is not None else 0


def from_openai(usage: Any) -> Usage:
    """Chat completions' usage: prompt_tokens already counts the cached ones
    (prompt_tokens_details.cached_tokens, absent or null on some servers), and
    completion_tokens the reasoning ones (completion_tokens_details.reasoning_tokens:
    never added again)."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = _count(getattr(details, "cached_tokens", None)) if details is not None else 0
    input_tokens = _count(usage.prompt_tokens)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=_count(usage.completion_tokens),
        cached_input_tokens=min(cached, input_tokens),
    )


def from_anthropic(usage: Any) -> Usage:
    """Messages' usage: input_tokens EXCLUDES cache_read_input_tokens and
    cache_creation_input_tokens (either may be null), so they are added to it."""
    cached = _count(getattr(usage, "cache_read_input_tokens", None))
    written = _count(getattr(usage, "cache_creation_input_tokens", None))
    return Usage(
        input_tokens=_count(usage.input_tokens) + cached + written,
        output_tokens=_count(usage.output_tokens),
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )
