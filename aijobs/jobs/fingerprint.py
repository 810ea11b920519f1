"""Hashes of requests: what determines the answer (dedup), and the whole body
(Idempotency-Key). Canonical JSON, so key order and whitespace do not matter."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from aijobs.jobs.schemas import JobRequest


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(tenant_id: uuid.UUID, request: JobRequest) -> str:
    """sha256 over the tenant and everything that changes the answer; not over
    delivery details (webhook, metadata, attempts, timeout, the cache flag)."""
    answer_inputs = request.model_dump(
        mode="json",
        exclude_none=True,
        include={
            "task",
            "model",
            "fallbacks",
            "messages",
            "input",
            "params",
            "response_schema",
            # A different check is a different request: its answer may be another.
            "checks",
        },
    )
    return hashlib.sha256(_canonical({"tenant": str(tenant_id), **answer_inputs})).hexdigest()


def body_hash(request: JobRequest) -> str:
    """The whole request as validated (defaults filled in). A priority not sent and a
    stream not asked for are left out, so a key accepted before these fields existed
    still matches its body."""
    unset = {"priority"} if request.priority is None else set()
    if not request.stream:
        unset.add("stream")
    return hashlib.sha256(_canonical(request.model_dump(mode="json", exclude=unset))).hexdigest()
