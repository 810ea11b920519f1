"""The fair queue: which queued job a free worker slot starts next.

A queued job's id waits in Redis, in its tenant's list for its priority. The Celery
message a job gets is a token, "run the next job": a worker with a free slot takes a
token, and NEXT (one Lua script) picks the job. So which job starts is decided when a
slot is free, not when the message was published, and a tenant's backlog of any size
sits in its own list instead of in front of everyone else's jobs.

Across tenants, NEXT is start-time fair queuing (virtual time): each tenant holds a tag,
the virtual time its next job starts at; NEXT takes the tenant with the lowest tag and
moves its tag on by 1/weight. A tenant that comes back from idle starts at the current
virtual time (or where it left off, if that is later), so it goes next but cannot cash
in its idle time. Within a tenant, `interactive` before `batch`. A tenant at its
`max_inflight` (its calls in flight across all workers, a sorted set of leases here)
is passed over; the token it would have taken is parked, and given back when one of
that tenant's calls ends (RELEASE) or by the sweeper (RECONCILE).

Redis is not the source of truth: a FLUSHDB loses the lists and the tokens, and the
sweeper pushes again what Postgres says is queued (aijobs/lost_work.py). A job pushed
twice runs once (the claim lets only one run). docs/scheduling.md has the picture.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis
from sqlalchemy import Connection, text

from aijobs.settings import get_settings

PREFIX = "aijobs:fq:"  # every key below starts with it (tests use a prefix of their own)
TAGS = "tags"  # zset: tenant with queued jobs -> its next job's start tag
FINISH = "fin"  # hash: idle tenant -> the tag it left off at
VNOW = "vnow"  # the system's virtual time: the tag of the last job started
WEIGHT = "weight"  # hash: tenant -> weight (1 when absent)
CAP = "cap"  # hash: tenant -> max calls in flight (absent: no cap)
PARKED = "parked"  # tokens taken while only capped tenants had jobs
# A tenant's jobs may be waiting for budget (set when one starts to wait, for a while):
# only then does the end of one of its calls look for waiters to wake (the sweeper
# looks on every pass anyway).
BUDGET_WAITERS = "bw:"
BUDGET_WAITERS_TTL_S = 300
PRIORITIES = ("interactive", "batch")
# NEXT looks at this many tenants, lowest tag first, for one under its cap.
SCAN = 200


def queue_key(tenant: str, priority: str, prefix: str = PREFIX) -> str:
    """A tenant's list of queued job ids for a priority ("<id> <pushed at>" each)."""
    return f"{prefix}q:{tenant}:{priority}"


def running_key(tenant: str, prefix: str = PREFIX) -> str:
    """A tenant's calls in flight: job id -> when its place lapses."""
    return f"{prefix}run:{tenant}"


# KEYS: the token list (Celery's queue, or any key when there are no tokens), weight,
# cap, tags, vnow, finish. ARGV: tenant, priority, weight, cap, the key prefix, then n,
# n job ids, then the tokens to push (any number).
_PUSH = """
local t, prio, n = ARGV[1], ARGV[2], tonumber(ARGV[6])
if n > 0 then
  redis.call('HSET', KEYS[2], t, ARGV[3])
  if tonumber(ARGV[4]) > 0 then
    redis.call('HSET', KEYS[3], t, ARGV[4])
  else
    redis.call('HDEL', KEYS[3], t)
  end
  local now = redis.call('TIME')
  local stamp = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
  local q = ARGV[5] .. 'q:' .. t .. ':' .. prio
  for i = 1, n do
    redis.call('RPUSH', q, ARGV[6 + i] .. ' ' .. stamp)
  end
  if not redis.call('ZSCORE', KEYS[4], t) then
    local vnow = tonumber(redis.call('GET', KEYS[5]) or '0')
    local left = tonumber(redis.call('HGET', KEYS[6], t) or '0')
    redis.call('ZADD', KEYS[4], math.max(vnow, left), t)
    redis.call('HDEL', KEYS[6], t)
  end
end
for i = 7 + n, #ARGV do
  redis.call('LPUSH', KEYS[1], ARGV[i])
end
return n
"""

# KEYS: tags, vnow, weight, cap, finish, parked. ARGV: lease_s, scan, the key prefix.
# Returns {tenant, entry, priority} or false.
_NEXT = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1e6
local tenants = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local capped = false
for i = 1, #tenants, 2 do
  local t, tag = tenants[i], tonumber(tenants[i + 1])
  local run = ARGV[3] .. 'run:' .. t
  local cap = tonumber(redis.call('HGET', KEYS[4], t) or '0')
  local room = true
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', run, '-inf', now_s)
    room = redis.call('ZCARD', run) < cap
  end
  local qi, qb = ARGV[3] .. 'q:' .. t .. ':interactive', ARGV[3] .. 'q:' .. t .. ':batch'
  if room then
    local prio = 'interactive'
    local entry = redis.call('LPOP', qi)
    if not entry then
      prio = 'batch'
      entry = redis.call('LPOP', qb)
    end
    if entry then
      redis.call('SET', KEYS[2], tostring(tag))
      local weight = tonumber(redis.call('HGET', KEYS[3], t) or '1')
      local after = tag + 1 / math.max(weight, 1)
      if redis.call('LLEN', qi) + redis.call('LLEN', qb) > 0 then
        redis.call('ZADD', KEYS[1], after, t)
      else
        redis.call('ZREM', KEYS[1], t)
        redis.call('HSET', KEYS[5], t, tostring(after))
      end
      local id = string.match(entry, '^(%S+)')
      local until_s = now_s + tonumber(ARGV[1])
      redis.call('ZADD', run, until_s, id)
      redis.call('EXPIREAT', run, math.ceil(until_s) + 1)
      return {t, entry, prio, tostring(now_s)}
    end
    redis.call('ZREM', KEYS[1], t)
    redis.call('HSET', KEYS[5], t, tostring(tag))
  elseif redis.call('LLEN', qi) + redis.call('LLEN', qb) > 0 then
    capped = true
  end
end
if capped then
  redis.call('INCR', KEYS[6])
end
return false
"""

# KEYS: parked. ARGV: tenant, job id, the key prefix. Returns {1 when a token must be
# published (the tenant was at its cap while a token was parked, and has jobs queued),
# 1 when the tenant may have jobs waiting for budget}.
_RELEASE = """
local t = ARGV[1]
redis.call('ZREM', ARGV[3] .. 'run:' .. t, ARGV[2])
local waiters = redis.call('EXISTS', ARGV[3] .. 'bw:' .. t)
local queued = redis.call('LLEN', ARGV[3] .. 'q:' .. t .. ':interactive')
  + redis.call('LLEN', ARGV[3] .. 'q:' .. t .. ':batch')
if queued > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
  return {1, waiters}
end
return {0, waiters}
"""

# KEYS: tags, cap, the token list, parked. ARGV: the key prefix.
# Returns {queued ids, tokens owed}: the jobs that could start now that have no token.
_RECONCILE = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1e6
local tenants = redis.call('ZRANGE', KEYS[1], 0, -1)
local queued, runnable = 0, 0
for _, t in ipairs(tenants) do
  local n = redis.call('LLEN', ARGV[1] .. 'q:' .. t .. ':interactive')
    + redis.call('LLEN', ARGV[1] .. 'q:' .. t .. ':batch')
  queued = queued + n
  local cap = tonumber(redis.call('HGET', KEYS[2], t) or '0')
  if cap > 0 then
    local run = ARGV[1] .. 'run:' .. t
    redis.call('ZREMRANGEBYSCORE', run, '-inf', now_s)
    n = math.min(n, math.max(0, cap - redis.call('ZCARD', run)))
  end
  runnable = runnable + n
end
local owed = math.max(0, runnable - redis.call('LLEN', KEYS[3]))
if owed > 0 then
  local parked = tonumber(redis.call('GET', KEYS[4]) or '0')
  redis.call('SET', KEYS[4], math.max(0, parked - owed))
end
return {queued, owed}
"""


@dataclass(frozen=True)
class Entry:
    """A queued job to push, with what NEXT needs to know of its tenant."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    priority: str = "interactive"
    weight: int = 1
    max_inflight: int | None = None


@dataclass(frozen=True)
class Turn:
    """A job NEXT picked: it holds one of its tenant's in-flight places until released."""

    job_id: uuid.UUID
    tenant: str
    priority: str
    waited_s: float  # since it was pushed (queued and due) until NEXT picked it


@lru_cache
def client() -> redis.Redis:
    """The broker's Redis: the lists and the tokens live side by side there."""
    return redis.Redis.from_url(get_settings().effective_broker_url, socket_timeout=5)


@lru_cache
def _scripts(
    conn: redis.Redis,
) -> tuple[
    redis.commands.core.Script,
    redis.commands.core.Script,
    redis.commands.core.Script,
    redis.commands.core.Script,
]:
    return (
        conn.register_script(_PUSH),
        conn.register_script(_NEXT),
        conn.register_script(_RELEASE),
        conn.register_script(_RECONCILE),
    )


def push(
    conn: redis.Redis,
    entries: Sequence[Entry],
    *,
    token_key: str = "",
    tokens: Sequence[bytes] = (),
    prefix: str = PREFIX,
) -> None:
    """Queue the jobs in their tenants' lists and push `tokens` on `token_key`, in one
    script per tenant and priority (the tokens go with the first)."""
    if tokens and not token_key:
        raise ValueError("tokens need the token list's key")
    groups: dict[tuple[uuid.UUID, str, int, int], list[str]] = {}
    for entry in entries:
        if entry.priority not in PRIORITIES:
            raise ValueError(f"unknown priority {entry.priority!r}")
        key = (entry.tenant_id, entry.priority, max(entry.weight, 1), entry.max_inflight or 0)
        groups.setdefault(key, []).append(str(entry.job_id))
    script = _scripts(conn)[0]
    names = (WEIGHT, CAP, TAGS, VNOW, FINISH)
    keys = [token_key or prefix + PARKED, *(prefix + name for name in names)]
    pending: list[bytes] = list(tokens)
    for (tenant, priority, weight, cap), ids in groups.items():
        args: list[str | int | bytes] = [str(tenant), priority, weight, cap, prefix, len(ids)]
        script(keys=keys, args=[*args, *ids, *pending])
        pending = []
    if pending:  # tokens with no job (tokens owed): pushed alone
        script(keys=keys, args=["", "interactive", 1, 0, prefix, 0, *pending])


def next_turn(conn: redis.Redis, lease_s: float, prefix: str = PREFIX) -> Turn | None:
    """The job a free slot starts now (its tenant's in-flight place taken for lease_s),
    or None when no tenant under its cap has a job queued."""
    keys = [prefix + name for name in (TAGS, VNOW, WEIGHT, CAP, FINISH, PARKED)]
    picked = _scripts(conn)[1](keys=keys, args=[lease_s, SCAN, prefix])
    if not picked:
        return None
    tenant, entry, priority, now_s = (part.decode() for part in picked)
    job_id, _, pushed = entry.partition(" ")
    waited = float(now_s) - float(pushed) if pushed else 0.0
    return Turn(uuid.UUID(job_id), tenant, priority, max(waited, 0.0))


@dataclass(frozen=True)
class Released:
    token_owed: bool  # publish a token: one was parked while the tenant was at its cap
    budget_waiters: bool  # the tenant may have jobs waiting for budget


def release(conn: redis.Redis, turn: Turn, prefix: str = PREFIX) -> Released:
    """The turn's call ended: its in-flight place is free."""
    script = _scripts(conn)[2]
    owed, waiters = script(keys=[prefix + PARKED], args=[turn.tenant, str(turn.job_id), prefix])
    return Released(bool(owed), bool(waiters))


def mark_budget_waiters(conn: redis.Redis, tenant_id: uuid.UUID, prefix: str = PREFIX) -> None:
    """One of the tenant's jobs waits for budget: the ends of its calls look for waiters
    to wake for the next BUDGET_WAITERS_TTL_S."""
    conn.set(f"{prefix}{BUDGET_WAITERS}{tenant_id}", 1, ex=BUDGET_WAITERS_TTL_S)


def renew(conn: redis.Redis, turns: Iterable[Turn], lease_s: float, prefix: str = PREFIX) -> None:
    """Extend the in-flight places of calls still running (only those still held)."""
    until = time.time() + lease_s
    pipe = conn.pipeline(transaction=False)
    for turn in turns:
        pipe.zadd(running_key(turn.tenant, prefix), {str(turn.job_id): until}, xx=True)
        pipe.expireat(running_key(turn.tenant, prefix), int(until) + 1)
    pipe.execute()


def reconcile(conn: redis.Redis, token_key: str, prefix: str = PREFIX) -> tuple[int, int]:
    """(job ids queued in the lists, tokens owed): the sweeper compares the first with
    what Postgres says is queued, and publishes the second."""
    keys = [prefix + TAGS, prefix + CAP, token_key, prefix + PARKED]
    queued, owed = _scripts(conn)[3](keys=keys, args=[prefix])
    return int(queued), int(owed)


def configure_tenant(
    conn: redis.Redis,
    tenant_id: uuid.UUID,
    weight: int,
    max_inflight: int | None,
    prefix: str = PREFIX,
) -> None:
    """A tenant's weight and cap, effective at once (every push also sets them)."""
    pipe = conn.pipeline(transaction=True)
    pipe.hset(prefix + WEIGHT, str(tenant_id), max(weight, 1))
    if max_inflight:
        pipe.hset(prefix + CAP, str(tenant_id), max_inflight)
    else:
        pipe.hdel(prefix + CAP, str(tenant_id))
    pipe.execute()


def in_flight(conn: redis.Redis, tenant_id: uuid.UUID, prefix: str = PREFIX) -> int:
    """The tenant's calls in flight now, across all workers."""
    key = running_key(str(tenant_id), prefix)
    conn.zremrangebyscore(key, "-inf", time.time())
    return int(conn.zcard(key))


_ENTRIES = text(
    """
    SELECT j.id, j.tenant_id, j.priority, t.weight, t.max_inflight
    FROM jobs j JOIN tenants t ON t.id = j.tenant_id
    WHERE j.id = ANY(:ids)
    """
)


def entries_for(conn: Connection, job_ids: Sequence[uuid.UUID]) -> list[Entry]:
    """What push needs of each job, from Postgres, in the order of `job_ids`."""
    if not job_ids:
        return []
    rows = {row[0]: row for row in conn.execute(_ENTRIES, {"ids": list(job_ids)})}
    return [
        Entry(row[0], row[1], row[2], row[3], row[4])
        for job_id in job_ids
        if (row := rows.get(job_id)) is not None
    ]
