"""Counted slots across all workers, in Redis: at most `cap` holders of a key at once.

A slot is a member of one sorted set per key, scored by when it expires: a worker that
dies holding one frees it once its work could no longer be running. The key itself
expires with its last slot, so idle keys do not pile up. Used for the per-model cap on
provider calls (worker/inflight.py) and the per-tenant cap on webhook deliveries
(worker/webhook_caps.py).
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
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])))
return 1
"""


@lru_cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().required_redis_url, socket_timeout=5)


def client() -> redis.Redis:
    """The workers' shared Redis client (the provider quotas use it too)."""
    return _client()


@lru_cache
def _acquire_script() -> redis.commands.core.Script:
    return _client().register_script(_ACQUIRE)


def acquire(key: str, slot: str, cap: int, hold_s: float) -> bool:
    """Take `slot` of `key` for at most hold_s; False when `cap` are taken."""
    now = time.time()
    args: list[float | int | str] = [now, now + hold_s, cap, slot]
    return bool(_acquire_script()(keys=[key], args=args))


def release(key: str, slot: str) -> None:
    _client().zrem(key, slot)
