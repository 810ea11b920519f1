"""The fake provider's streamed answers (tests/fake_openai.py): a Chat Completions or
Messages answer, as OpenAI and Anthropic send it when asked to stream. The numbers are
the unstreamed answer's; only the framing differs."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any


def reply_pieces(text: str, directives: dict[str, str]) -> list[str]:
    """The chunks a streamed reply is sent in ([chunks:N], else one a word with its
    spaces): joined, they give the reply back."""
    count = int(directives.get("chunks") or 0)
    if count:
        bounds = [len(text) * i // count for i in range(count + 1)]
        pieces = [text[start:end] for start, end in itertools.pairwise(bounds)]
    else:
        pieces = re.findall(r"\s*\S+\s*", text)
    return [piece for piece in pieces if piece] or [text]


# A streamed answer: (the SSE event name or None, its data, whether it is a reply chunk).
Event = tuple[str | None, dict[str, Any] | str, bool]


def chat_stream(answer: dict[str, Any], directives: dict[str, str], usage: bool) -> list[Event]:
    """A Chat Completions answer as OpenAI streams it."""
    head = {
        "id": answer["id"],
        "object": "chat.completion.chunk",
        "created": answer["created"],
        "model": answer["model"],
        "system_fingerprint": None,
    }
    choice = answer["choices"][0]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        one = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "choices": [one], **({"usage": None} if usage else {})}

    reply = (choice["message"] or {}).get("content") or ""
    events: list[Event] = [(None, chunk({"role": "assistant", "content": ""}), False)]
    events += [(None, chunk({"content": piece}), True) for piece in reply_pieces(reply, directives)]
    events.append((None, chunk({}, choice["finish_reason"]), False))
    if usage:
        events.append((None, {**head, "choices": [], "usage": answer["usage"]}, False))
    return [*events, (None, "[DONE]", False)]


def message_stream(answer: dict[str, Any], directives: dict[str, str]) -> list[Event]:
    """A Messages answer as Anthropic streams it."""
    block = answer["content"][0]
    if block["type"] == "tool_use":
        opened, text = {**block, "input": {}}, json.dumps(block["input"])
        delta, field = "input_json_delta", "partial_json"
    else:
        opened, text = {"type": "text", "text": ""}, block["text"]
        delta, field = "text_delta", "text"
    usage = answer["usage"]
    # Anthropic's message_start has the input and cache tokens, and an output count
    # that message_delta replaces.
    start = {**answer, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start}, False),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": opened},
            False,
        ),
        ("ping", {"type": "ping"}, False),
    ]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": delta, field: piece}},
            True,
        )
        for piece in reply_pieces(text, directives)
    ]
    ended = {"stop_reason": answer["stop_reason"], "stop_sequence": None}
    return [
        *events,
        ("content_block_stop", {"type": "content_block_stop", "index": 0}, False),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": ended,
                "usage": {"output_tokens": usage["output_tokens"]},
            },
            False,
        ),
        ("message_stop", {"type": "message_stop"}, False),
    ]
