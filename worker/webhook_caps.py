"""A per-tenant cap on webhook deliveries in flight across all workers (Redis), so one
tenant's slow receivers hold at most AIJOBS_WEBHOOK_TENANT_INFLIGHT webhook threads
and delay nobody else's webhooks.

The slots are worker/redis_slots.py's: a worker that dies holding one frees it once
the attempt could no longer be running.
"""

from __future__ import annotations

import uuid

from worker import redis_slots


def _key(tenant_id: uuid.UUID) -> str:
    return f"aijobs:webhooks:inflight:{tenant_id}"


def acquire(tenant_id: uuid.UUID, cap: int, hold_s: float) -> str | None:
    """A slot of the tenant's cap, held at most hold_s; None when all are taken."""
    slot = uuid.uuid4().hex  # its own per attempt: a duplicate message takes its own
    return slot if redis_slots.acquire(_key(tenant_id), slot, cap, hold_s) else None


def release(tenant_id: uuid.UUID, slot: str) -> None:
    redis_slots.release(_key(tenant_id), slot)
