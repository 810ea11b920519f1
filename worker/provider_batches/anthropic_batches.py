"""Anthropic's Message Batches: one request a call with the params the single call
sends, polled until processing_status is "ended", results read as JSONL.

A Message Batch carries no metadata. After a crash between the create call and the row
update, the batch is found again among the newest batches: created after our first
try, with as many requests as ours, and held by no other row. Two of our rows of the
same size, both submitted and both crashed within the same minute, could be told apart
wrongly: that narrow window is accepted (the results map back by custom_id, job ids,
so a mix-up settles nothing it should not: a line for a job not in the row is
ignored, and the row's own jobs end as failed attempts, retried on the standard tier)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import anthropic
from sqlalchemy import RowMapping

from aijobs.batches import provider_batches
from aijobs.db import autocommit
from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings
from worker.provider_batches.base import CLOCK_SKEW_S, FIND_LIMIT, Call, Polled
from worker.providers.anthropic_provider import (
    ANTHROPIC_DEFAULT_BASE_URL,
    message_completion,
    message_kwargs,
)
from worker.providers.base import Completion, ProviderError

# Errors the same request would meet again: not retried.
PERMANENT = frozenset({"invalid_request_error", "authentication_error", "permission_error"})


@lru_cache
def _client() -> anthropic.Anthropic:
    settings = get_settings()
    if not settings.anthropic_api_key:
        raise ProviderError(
            "provider_error", "ANTHROPIC_API_KEY is not set on the worker", retryable=False
        )
    return anthropic.Anthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url or ANTHROPIC_DEFAULT_BASE_URL,
        max_retries=0,
        timeout=300.0,
    )


def _total(batch: Any) -> int:
    counts = batch.request_counts
    return int(
        counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    )


class AnthropicBatches:
    provider = "anthropic"

    def find(self, row: RowMapping) -> str | None:
        started = row["submit_started_at"]
        if started is None:
            return None
        since = started.timestamp() - CLOCK_SKEW_S
        with autocommit() as conn:
            taken = provider_batches.adopted(conn, self.provider)
        candidates = []
        for seen, batch in enumerate(_client().messages.batches.list(limit=100)):
            created = batch.created_at.timestamp()
            if seen >= FIND_LIMIT or created < since:
                break
            if batch.id not in taken and _total(batch) == row["requests"]:
                candidates.append((created, batch.id))
        # The oldest one created after our first try is the one that try made.
        return min(candidates)[1] if candidates else None

    def submit(self, row: RowMapping, calls: list[Call], on_file: Callable[[str], None]) -> str:
        requests: list[Any] = [
            {"custom_id": call.custom_id, "params": message_kwargs(call.name, call.request)}
            for call in calls
        ]
        return _client().messages.batches.create(requests=requests).id

    def poll(self, provider_batch_id: str) -> Polled:
        batch = _client().messages.batches.retrieve(provider_batch_id)
        return Polled(ended=batch.processing_status == "ended", status=batch.processing_status)

    def results(self, provider_batch_id: str) -> Iterator[tuple[str, Any]]:
        for line in _client().messages.batches.results(provider_batch_id):
            yield line.custom_id, line.result

    def outcome(self, raw: Any, request: JobRequest) -> Completion | ProviderError:
        kind = getattr(raw, "type", None)
        if kind == "succeeded":
            return message_completion(raw.message, request)
        if kind == "errored":
            error = getattr(getattr(raw, "error", None), "error", None)
            code = str(getattr(error, "type", "") or "api_error")
            return ProviderError(
                "provider_error",
                f"the provider batch line failed ({code})",
                retryable=code not in PERMANENT,
            )
        if kind == "expired":
            return ProviderError(
                "provider_timeout",
                "the provider batch expired before this request ran",
                retryable=True,
            )
        return ProviderError(
            "provider_error",
            "the provider batch was cancelled before this request ran",
            retryable=True,
        )
