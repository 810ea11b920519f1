"""A per-model cap on provider calls in flight across all workers (Redis), so a burst
queues instead of hammering the provider.

The slots are worker/redis_slots.py's: a worker that dies holding one frees it when
the call could no longer be running.
"""

from __future__ import annotations

from functools import lru_cache

from aijobs.settings import get_settings
from worker import redis_slots


@lru_cache
def caps() -> dict[str, int]:
    """AIJOBS_MODEL_INFLIGHT_CAPS, e.g. "openai/gpt-4o-mini=50,sim/echo=200"."""
    parsed: dict[str, int] = {}
    for item in get_settings().model_inflight_caps.split(","):
        model, _, cap = item.strip().rpartition("=")
        if model:
            parsed[model] = int(cap)
    return parsed


def cap_for(model: str) -> int:
    """0 means no cap."""
    return caps().get(model, get_settings().model_inflight_cap)


def _key(model: str) -> str:
    return f"aijobs:inflight:{model}"


def acquire(model: str, slot: str, hold_s: float) -> bool:
    """Take a slot under the model's cap, or under the lower limit learned from its
    429s (worker/provider_quota.py, AIMD)."""
    cap = cap_for(model)
    learned = redis_slots.client().hget(f"aijobs:quota:aimd:{model}", "limit")
    if learned is not None:
        cap = min(cap, int(learned))
    return redis_slots.acquire(_key(model), slot, cap, hold_s)


def release(model: str, slot: str) -> None:
    redis_slots.release(_key(model), slot)
