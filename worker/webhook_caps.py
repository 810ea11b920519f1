"""A per-tenant cap on webhook deliveries in flight across all workers (Redis), so one
tenant's slow receivers hold at most AIJOBS_WEBHOOK_TENANT_INFLIGHT webhook threads
and delay nobody else's webhooks.

A slot is a member of one sorted set per tenant, scored by when it expires (as in
worker/inflight.py for model caps): a worker that dies holding one frees it once the
attempt could no longer be running. The key itself expires when the tenant is idle.
"""

from __future__ import annotations

import time
import uuid
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


@lru_cache
def _acquire_script() -> redis.commands.core.Script:
    return _client().register_script(_ACQUIRE)


def _key(tenant_id: uuid.UUID) -> str:
    return f"aijobs:webhooks:inflight:{tenant_id}"


def acquire(tenant_id: uuid.UUID, cap: int, hold_s: float) -> str | None:
    """A slot of the tenant's cap, held at most hold_s; None when all are taken."""
    slot = uuid.uuid4().hex  # its own per attempt: a duplicate message takes its own
    now = time.time()
    args: list[float | int | str] = [now, now + hold_s, cap, slot]
    return slot if _acquire_script()(keys=[_key(tenant_id)], args=args) else None


def release(tenant_id: uuid.UUID, slot: str) -> None:
    _client().zrem(_key(tenant_id), slot)
