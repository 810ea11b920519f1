"""Per-tenant rate limits, shared by every API process through Redis.

`rpm` counts job submissions only (SPEC: "never reads"); reads (a job, the list, usage,
a long-poll, cancel) have a bucket of their own, generous enough that polling never
gets near it, so a polling client cannot use up its submissions.

GCRA (the generic cell rate algorithm) in one Lua script: one key per tenant and
bucket, a burst of up to `per_minute` cells, then one every 60/per_minute seconds; a
request may take several cells (a batch, by its jobs). The clock is Redis's, so API
hosts with skewed clocks agree.
"""

from __future__ import annotations

import math
import uuid
from functools import lru_cache

import redis

from aijobs.errors import AppError
from aijobs.settings import get_settings

# Reads per minute: this many times the tenant's rpm, and never fewer than READS_FLOOR.
READS_PER_SUBMISSION = 20
READS_FLOOR = 1200

_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cells = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + cells * interval - burst * interval
if allow_at > now then
  return tostring(allow_at - now)
end
local ttl_ms = math.ceil(burst * interval * 1000) + 1000
redis.call('SET', KEYS[1], tostring(tat + cells * interval), 'PX', ttl_ms)
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


def _take(key: str, per_minute: int, cells: int, what: str) -> None:
    wait = float(_script()(keys=[key], args=[60 / per_minute, per_minute, cells]))
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(
            f"more than {per_minute} {what} per minute; retry in {retry_after} s",
            extra={"retry_after_s": retry_after},
        )


def check_submissions(tenant_id: uuid.UUID, rpm: int, jobs: int = 1) -> None:
    """Raise RateLimited (with the seconds to wait) when `jobs` more submissions would
    take the tenant over its rpm."""
    _take(f"aijobs:rpm:{tenant_id}", rpm, jobs, "job submissions")


def check_reads(tenant_id: uuid.UUID, rpm: int) -> None:
    """The reads' own bucket: READS_PER_SUBMISSION x rpm, at least READS_FLOOR."""
    _take(
        f"aijobs:rpm-reads:{tenant_id}",
        max(READS_PER_SUBMISSION * rpm, READS_FLOOR),
        1,
        "reads",
    )
