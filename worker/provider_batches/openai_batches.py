"""OpenAI's Batch API: the calls uploaded as a JSONL file (purpose "batch"), one line a
call with the body the single call sends, a batch created on it with a 24 h window and
our row's id in its metadata (how a crashed worker's batch is found again), polled, and
its output and error files read line by line."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

import openai
from sqlalchemy import RowMapping

from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings
from worker.provider_batches.base import CLOCK_SKEW_S, FIND_LIMIT, Call, Polled
from worker.providers.base import Completion, ProviderError
from worker.providers.errors import from_status
from worker.providers.openai_provider import (
    OPENAI_DEFAULT_BASE_URL,
    chat_completion,
    chat_kwargs,
    embed_kwargs,
    embeddings_completion,
)

METADATA_KEY = "aijobs_provider_batch"
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
ENDPOINTS = {"chat": "/v1/chat/completions", "embed": "/v1/embeddings"}


@lru_cache
def _client() -> openai.OpenAI:
    settings = get_settings()
    if not settings.openai_api_key:
        raise ProviderError(
            "provider_error", "OPENAI_API_KEY is not set on the worker", retryable=False
        )
    return openai.OpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url or OPENAI_DEFAULT_BASE_URL,
        max_retries=0,
        timeout=300.0,
    )


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


class OpenAIBatches:
    provider = "openai"

    def find(self, row: RowMapping) -> str | None:
        if row["submit_started_at"] is None:
            return None  # never asked: nothing to find
        since = _epoch(row["submit_started_at"]) - CLOCK_SKEW_S
        for seen, batch in enumerate(_client().batches.list(limit=100)):
            if (batch.metadata or {}).get(METADATA_KEY) == str(row["id"]):
                return batch.id
            if seen >= FIND_LIMIT or batch.created_at < since:
                return None  # newest first: the rest is older than our first try
        return None

    def submit(self, row: RowMapping, calls: list[Call], on_file: Callable[[str], None]) -> str:
        client = _client()
        file_id = row["input_file_id"]
        if file_id is None:
            # Spooled to disk past a few MiB: 50,000 lines need not sit in memory.
            with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
                for call in calls:
                    spool.write(json.dumps(self._line(row["task"], call)).encode() + b"\n")
                spool.seek(0)
                uploaded = client.files.create(
                    file=(f"aijobs-{row['id']}.jsonl", spool), purpose="batch"
                )
            file_id = uploaded.id
            on_file(file_id)
        batch = client.batches.create(
            input_file_id=file_id,
            endpoint=ENDPOINTS[row["task"]],  # type: ignore[arg-type]
            completion_window="24h",
            metadata={METADATA_KEY: str(row["id"])},
        )
        return batch.id

    @staticmethod
    def _line(task: str, call: Call) -> dict[str, Any]:
        if task == "embed":
            body = embed_kwargs(call.name, call.request)
        else:
            body = chat_kwargs(call.name, call.request)
        return {"custom_id": call.custom_id, "method": "POST", "url": ENDPOINTS[task], "body": body}

    def poll(self, provider_batch_id: str) -> Polled:
        batch = _client().batches.retrieve(provider_batch_id)
        return Polled(ended=batch.status in ENDED, status=batch.status)

    def results(self, provider_batch_id: str) -> Iterator[tuple[str, Any]]:
        client = _client()
        batch = client.batches.retrieve(provider_batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            with client.files.with_streaming_response.content(file_id) as response:
                for text in response.iter_lines():
                    if not text.strip():
                        continue
                    line = json.loads(text)
                    if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                        yield line["custom_id"], line

    def outcome(self, raw: Any, request: JobRequest) -> Completion | ProviderError:
        response = raw.get("response") or None
        error = raw.get("error") or None
        if isinstance(response, dict) and response.get("status_code") == 200:
            body = response.get("body") or {}
            if request.task == "embed":
                embedded = openai.types.CreateEmbeddingResponse.model_validate(body)
                return embeddings_completion(embedded, request)
            completion = openai.types.chat.ChatCompletion.model_validate(body)
            return chat_completion(completion, request)
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            status = int(response["status_code"])
            return from_status(status, f"the provider answered HTTP {status} in its batch", None)
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        if code == "batch_expired":
            return ProviderError(
                "provider_timeout",
                "the provider batch expired before this request ran",
                retryable=True,
            )
        if code == "batch_cancelled":
            return ProviderError(
                "provider_error",
                "the provider batch was cancelled before this request ran",
                retryable=True,
            )
        return ProviderError(
            "provider_error", "the provider batch line failed without an answer", retryable=True
        )
