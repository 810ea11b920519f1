"""Per-tenant requests per minute, shared by every API process through Redis.

GCRA (the generic cell rate algorithm) in one Lua script: one key per tenant, a
burst of up to `rpm` requests, then one every 60/rpm seconds. The clock is Redis's,
so API hosts with skewed clocks agree.
"""

from __future__ import annotations

import math
import uuid
from functools import lru_cache

import redis

from aijobs.errors import AppError
from aijobs.settings import get_settings

_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if allow_at > now then
  return tostring(allow_at - now)
end
local ttl_ms = math.ceil(burst * interval * 1000) + 1000
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', ttl_ms)
return '0'
"""


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


@lru_cache
def _script() -> redis.commands.core.Script:
    client = redis.Redis.from_url(get_settings().required_redis_url, socket_timeout=2)
    return client.register_script(_GCRA)


def check(tenant_id: uuid.UUID, rpm: int) -> None:
    """Raise RateLimited (with the seconds to wait) when the tenant is over its rpm."""
    wait = float(_script()(keys=[f"aijobs:rpm:{tenant_id}"], args=[60 / rpm, rpm]))
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(
            f"more than {rpm} requests per minute; retry in {retry_after} s",
            extra={"retry_after_s": retry_after},
        )
