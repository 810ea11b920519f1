"""The Redis Lua scripts of the provider quotas (worker/provider_quota.py): each one
atomic, so any number of workers share one count. Times come from Redis's own clock
(TIME), so the workers' clocks never disagree about a window.

Keys of one model M (the in-flight set is worker/inflight.py's, shared with the
configured AIJOBS_MODEL_INFLIGHT_CAP(S)):
  aijobs:inflight:M          sorted set: calls in flight (member -> expiry)
  aijobs:quota:block:M       the time until which calls to M wait (headers, 429s)
  aijobs:quota:aimd:M        hash: limit (adaptive concurrency), good, cut_at
  aijobs:quota:refused:M     calls turned away by the concurrency limit in the last 5 s
  aijobs:quota:left:M        requests the provider's headers leave until their reset
and of one AIJOBS_PROVIDER_LIMITS rule R (a sliding-window log):
  aijobs:quota:log:R         sorted set: call id -> when it was admitted, or the later
                             time reserved for it when the window was full
  aijobs:quota:tok:R         hash: call id -> tokens it holds
  aijobs:quota:sum:R         the tokens held by the calls in the window
"""

from __future__ import annotations

# The time now, in seconds (float), from Redis.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: block, aimd, inflight, waits, refused, left, then (log, tok, sum) per rule.
# ARGV: id, tokens, hold_s, cap (0: none, -1: the slot is held already), window_s, model,
#       soon_s, then (rpm, tpm) per rule (0: none).
# Returns {status, wait_s}: 0 admitted; 1 blocked by the provider; 2 at the concurrency
# limit; 3 over a rule's rpm or tpm: a place in a later window is reserved for the call
# (under its id, which its job keeps when it comes back), so waiting calls come back
# paced, one place each, not all at once; 4 admitted with its place wait_s from now
# (within soon_s): the worker holds the call until then.
ADMIT = (
    _NOW
    + """
local id, need, hold, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local window, model, soon = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local function waited(status, reason, wait)
  redis.call('HINCRBY', KEYS[4], model .. '|' .. reason, 1)
  return {status, tostring(wait)}
end
local until_ = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > now then
  return waited(1, 'provider', until_ - now)
end
local left = redis.call('GET', KEYS[6])
if left and tonumber(left) <= 0 then
  return waited(1, 'provider', math.max(redis.call('PTTL', KEYS[6]), 1) / 1000)
end
local rules = (#KEYS - 6) / 3
local at = now
local placed = {}
for r = 0, rules - 1 do
  local log, tok, sum = KEYS[7 + 3 * r], KEYS[8 + 3 * r], KEYS[9 + 3 * r]
  local rpm, tpm = tonumber(ARGV[8 + 2 * r]), tonumber(ARGV[9 + 2 * r])
  local gone = redis.call('ZRANGEBYSCORE', log, '-inf', now - window)
  if #gone > 0 then
    local freed = 0
    for _, member in ipairs(gone) do
      freed = freed + tonumber(redis.call('HGET', tok, member) or '0')
      redis.call('HDEL', tok, member)
    end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
    redis.call('DECRBY', sum, freed)
  end
  local mine = redis.call('ZSCORE', log, id)
  if mine and tonumber(mine) < now - 0.1 then
    -- Back too late for its place: the place is given up (the provider counts a call
    -- when it is made) and the call takes the next free one.
    redis.call('ZREM', log, id)
    redis.call('DECRBY', sum, tonumber(redis.call('HGET', tok, id) or '0'))
    redis.call('HDEL', tok, id)
    mine = nil
  end
  if mine then
    placed[r] = true
    at = math.max(at, tonumber(mine))
  else
    local t = now
    local count = redis.call('ZCARD', log)
    if rpm > 0 and count >= rpm then
      local entry = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
      t = math.max(t, tonumber(entry[2]) + window)
    end
    if tpm > 0 then
      local want = math.min(need, tpm)
      local held = tonumber(redis.call('GET', sum) or '0')
      if held + want > tpm then
        local entries = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
        local freed = 0
        for i = 1, #entries, 2 do
          freed = freed + tonumber(redis.call('HGET', tok, entries[i]) or '0')
          if held - freed + want <= tpm then
            t = math.max(t, tonumber(entries[i + 1]) + window)
            break
          end
        end
      end
    end
    if t > now and count > 0 then
      local last = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
      t = math.max(t, tonumber(last[2]))  -- the log stays in time order
    end
    at = math.max(at, t)
  end
end
local function place(when)
  for r = 0, rules - 1 do
    if not placed[r] then
      local log, tok, sum = KEYS[7 + 3 * r], KEYS[8 + 3 * r], KEYS[9 + 3 * r]
      local tpm = tonumber(ARGV[9 + 2 * r])
      local want = tpm > 0 and math.min(need, tpm) or need
      redis.call('ZADD', log, when, id)
      redis.call('HSET', tok, id, want)
      redis.call('INCRBY', sum, want)
      local last = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
      local expire = math.ceil((tonumber(last[2]) + window) * 1000) + 1000
      redis.call('PEXPIREAT', log, expire)
      redis.call('PEXPIREAT', tok, expire)
      redis.call('PEXPIREAT', sum, expire)
    end
  end
end
if at > now + soon then
  place(at)
  return waited(3, 'limit', at - now)
end
if cap >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local limit = tonumber(redis.call('HGET', KEYS[2], 'limit') or '0')
  if cap > 0 and (limit == 0 or cap < limit) then limit = cap end
  if limit > 0 and redis.call('ZCARD', KEYS[3]) >= limit then
    -- The r-th call turned away in these 5 s waits about r / limit half-seconds: the
    -- waiting calls come back about as fast as the limit lets calls through, instead
    -- of claiming again in lockstep.
    local refused = redis.call('INCR', KEYS[5])
    if refused == 1 then redis.call('PEXPIRE', KEYS[5], 5000) end
    return waited(2, 'concurrency', 0.1 + 0.5 * refused / limit)
  end
  redis.call('ZADD', KEYS[3], now + hold, id)
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', KEYS[3], math.ceil(tonumber(last[2])))
end
place(at)
if left then redis.call('DECR', KEYS[6]) end
if at > now + 0.005 then
  return waited(4, 'limit', at - now)
end
return {0, '0'}
"""
)

# After the call: its tokens corrected to what it used, in every rule's window that
# still holds it. KEYS: (tok, sum) per rule. ARGV: id, tokens used.
CORRECT = """
for r = 0, #KEYS / 2 - 1 do
  local tok, sum = KEYS[1 + 2 * r], KEYS[2 + 2 * r]
  local old = redis.call('HGET', tok, ARGV[1])
  if old then
    redis.call('HSET', tok, ARGV[1], ARGV[2])
    redis.call('INCRBY', sum, tonumber(ARGV[2]) - tonumber(old))
  end
end
return 0
"""

# After the call: what the provider said. KEYS: block, aimd, inflight, waits, left.
# ARGV: outcome ("ok" | "limited" | "other"), block_s (0: none), cap (configured, 0:
# none), aimd_ttl_s, model, requests_left (-1: not said), requests_reset_s (0: not said).
# Of the requests the provider says are left, the calls in flight besides this one may
# not have been counted yet: what remains is kept until the reset (`left`) and each
# admission takes one; at none left, calls wait for the reset. A block only ever moves
# later. On "limited" (a 429) the concurrency limit halves (at most once a second: the
# 429s of one burst are one signal), from the calls in flight when fewer; after a
# quarter of `limit` successes it grows by one (about four a round trip), and at the
# configured cap it is dropped (the configured cap rules again). Returns the limit
# (0: none).
OBSERVE = (
    _NOW
    + """
local block, cap, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local left, reset = tonumber(ARGV[6]), tonumber(ARGV[7])
if left >= 0 and reset > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local others = math.max(redis.call('ZCARD', KEYS[3]) - 1, 0)
  redis.call('SET', KEYS[5], left - others, 'PX', math.ceil(reset * 1000))
end
if block > 0 then
  local until_ = now + block
  if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
    redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(block * 1000))
  end
end
local limit = tonumber(redis.call('HGET', KEYS[2], 'limit') or '0')
if ARGV[1] == 'limited' then
  redis.call('HINCRBY', KEYS[4], ARGV[5] .. '|429', 1)
  local cut_at = tonumber(redis.call('HGET', KEYS[2], 'cut_at') or '0')
  if now - cut_at >= 1 then
    -- Halve what is really in flight (a limit above it would not bite).
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
    local flying = math.max(redis.call('ZCARD', KEYS[3]), 1)
    if limit == 0 or flying < limit then limit = flying end
    if cap > 0 and cap < limit then limit = cap end
    limit = math.max(1, math.floor(limit / 2))
    redis.call('HSET', KEYS[2], 'limit', limit, 'good', 0, 'cut_at', tostring(now))
  end
  redis.call('EXPIRE', KEYS[2], ttl)
elseif ARGV[1] == 'ok' and limit > 0 then
  local good = redis.call('HINCRBY', KEYS[2], 'good', 1)
  if good >= math.max(1, math.floor(limit / 4)) then
    limit = limit + 1
    if cap > 0 and limit >= cap then
      redis.call('DEL', KEYS[2])
      return 0
    end
    redis.call('HSET', KEYS[2], 'limit', limit, 'good', 0)
  end
end
return limit
"""
)
