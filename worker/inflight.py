"""A per-model cap on provider calls in flight across all workers (Redis), so a burst
queues instead of hammering the provider.

A slot is a member of one sorted set per model, scored by when it expires: a worker
that dies holding one frees it when the call could no longer be running.
"""

from __future__ import annotations

import time
from functools import lru_cache

import redis

from aijobs.settings import get_settings

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
return 1
"""


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


@lru_cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().required_redis_url, socket_timeout=5)


@lru_cache
def _acquire_script() -> redis.commands.core.Script:
    return _client().register_script(_ACQUIRE)


def _key(model: str) -> str:
    return f"aijobs:inflight:{model}"


def acquire(model: str, slot: str, hold_s: float) -> bool:
    now = time.time()
    args: list[float | int | str] = [now, now + hold_s, cap_for(model), slot]
    return bool(_acquire_script()(keys=[_key(model)], args=args))


def release(model: str, slot: str) -> None:
    _client().zrem(_key(model), slot)
