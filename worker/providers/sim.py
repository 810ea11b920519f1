"""The built-in simulator (`sim/*`), for demos and load tests: it calls no real model.

`sim/echo` replies with the last user message; `sim/embed` returns deterministic
vectors; `sim/down` always fails with a transient error (a provider outage, to show
fallbacks). Latency and the share of transient failures come from settings. A streamed
call sends its reply word by word, the latency spread across the words.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re

from aijobs.billing.call_bounds import output_cap
from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings
from worker.providers.base import Completion, OnDelta, ProviderError, delta_sink

DIMENSIONS = 8
# A word with the spaces around it: the pieces of a text joined give it back exactly.
WORD_PIECE = re.compile(r"\s*\S+\s*")


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 6) for byte in digest[:DIMENSIONS]]


def word_pieces(text: str) -> list[str]:
    """The text cut into words, each with its spaces, so that they concatenate to it."""
    return WORD_PIECE.findall(text) or ([text] if text else [])


async def _stream_words(text: str, latency: float, on_delta: OnDelta) -> None:
    pieces = word_pieces(text)
    if not pieces:
        await asyncio.sleep(latency)
    for piece in pieces:
        await asyncio.sleep(latency / len(pieces))
        on_delta(piece)


class SimProvider:
    async def run(
        self,
        name: str,
        request: JobRequest,
        timeout_s: float,
        on_delta: OnDelta | None = None,
    ) -> Completion:
        settings = get_settings()
        latency = settings.sim_latency_s
        if latency > timeout_s:
            await asyncio.sleep(timeout_s)
            raise ProviderError("provider_timeout", "sim: simulated timeout", retryable=True)
        sink = delta_sink(request, on_delta)
        if latency and sink is None:
            await asyncio.sleep(latency)
        if name == "down" or (
            settings.sim_error_rate and random.random() < settings.sim_error_rate
        ):
            raise ProviderError(
                "provider_error",
                f"sim/{name}: simulated transient error",
                retryable=True,
                http_status=503,
            )
        if request.task == "embed":
            inputs = request.input if isinstance(request.input, list) else [request.input or ""]
            return Completion(
                content="",
                finish_reason="stop",
                input_tokens=sum(_words(text) for text in inputs),
                output_tokens=0,
                embeddings=[_vector(text) for text in inputs],
            )
        messages = request.messages or []
        users = [message.content for message in messages if message.role == "user"]
        reply = users[-1] if users else ""
        # Like a real model, it stops at the output cap it is sent (the one reserved).
        cap = output_cap(request, f"sim/{name}")
        words = reply.split()
        finish_reason = "stop"
        if len(words) > cap:
            reply, finish_reason = " ".join(words[:cap]), "length"
        if sink is not None:
            # Like a provider's stream: the failures above come before its first word.
            await _stream_words(reply, latency, sink)
        return Completion(
            content=reply,
            finish_reason=finish_reason,
            input_tokens=sum(_words(message.content) for message in messages),
            output_tokens=_words(reply),
        )
