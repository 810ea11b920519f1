"""Small helpers the tests share: request bodies and unique messages."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any


def chat(content: str, model: str = "openai/gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def unique(text: str = "") -> str:
    """A message no other test sends, so the fake's per-message counters are ours alone."""
    return f"{text} {uuid.uuid4().hex}".strip()


def gpt4o_mini_cost(input_tokens: int, output_tokens: int) -> Decimal:
    """List price of openai/gpt-4o-mini: 0.15 in, 0.60 out per 1M tokens."""
    return (input_tokens * Decimal("0.15") + output_tokens * Decimal("0.60")) / 1_000_000
