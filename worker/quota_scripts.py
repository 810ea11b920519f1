"""The Redis Lua scripts of the provider quotas (worker/provider_quota.py): each one
atomic, so any number of workers share one count. Times come from Redis's own clock
(TIME), so the workers' clocks never disagree about a window.

Keys of one model M (the in-flight set is worker/inflight.py's, shared with the
configured AIJOBS_MODEL_INFLIGHT_CAP(S)):
  aijobs:inflight:M          sorted set: calls in flight (member -> expiry)
  aijobs:quota:block:M       the time until which calls to M wait (headers, 429s)
  aijobs:quota:aimd:M        hash: limit (adaptive concurrency), good, cut_at
and of one AIJOBS_PROVIDER_LIMITS rule R (a sliding-window log):
  aijobs:quota:log:R         sorted set: call id -> when it was admitted
  aijobs:quota:tok:R         hash: call id -> tokens it holds
  aijobs:quota:sum:R         the tokens held by the calls in the window
"""

from __future__ import annotations

# The time now, in seconds (float), from Redis.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: block, aimd, inflight, waits, then (log, tok, sum) per rule.
# ARGV: id, tokens, hold_s, cap (0: none, -1: the slot is held already), window_s, model,
#       then (rpm, tpm) per rule (0: none).
# Returns {status, wait_s}: 0 admitted; 1 blocked by the provider; 2 at the concurrency
# limit; 3 over a rule's rpm or tpm in the window.
ADMIT = (
    _NOW
    + """
local id, need, hold, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local window, model = tonumber(ARGV[5]), ARGV[6]
local function waited(status, reason, wait)
  redis.call('HINCRBY', KEYS[4], model .. '|' .. reason, 1)
  return {status, tostring(wait)}
end
local until_ = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > now then
  return waited(1, 'provider', until_ - now)
end
if cap >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local limit = tonumber(redis.call('HGET', KEYS[2], 'limit') or '0')
  if cap > 0 and (limit == 0 or cap < limit) then limit = cap end
  if limit > 0 and redis.call('ZCARD', KEYS[3]) >= limit then
    return waited(2, 'concurrency', 0.2)
  end
end
local wait = 0
local rules = (#KEYS - 4) / 3
for r = 0, rules - 1 do
  local log, tok, sum = KEYS[5 + 3 * r], KEYS[6 + 3 * r], KEYS[7 + 3 * r]
  local rpm, tpm = tonumber(ARGV[7 + 2 * r]), tonumber(ARGV[8 + 2 * r])
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
  local count = redis.call('ZCARD', log)
  if rpm > 0 and count + 1 > rpm then
    local oldest = redis.call('ZRANGE', log, count - rpm, count - rpm, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
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
          wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
          break
        end
      end
    end
  end
end
if wait > 0 then
  return waited(3, 'limit', math.max(wait, 0.01))
end
if cap >= 0 then
  redis.call('ZADD', KEYS[3], now + hold, id)
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', KEYS[3], math.ceil(tonumber(last[2])))
end
local ttl = math.ceil(window * 1000) + 1000
for r = 0, rules - 1 do
  local log, tok, sum = KEYS[5 + 3 * r], KEYS[6 + 3 * r], KEYS[7 + 3 * r]
  local tpm = tonumber(ARGV[8 + 2 * r])
  local want = tpm > 0 and math.min(need, tpm) or need
  redis.call('ZADD', log, now, id)
  redis.call('HSET', tok, id, want)
  redis.call('INCRBY', sum, want)
  redis.call('PEXPIRE', log, ttl)
  redis.call('PEXPIRE', tok, ttl)
  redis.call('PEXPIRE', sum, ttl)
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

# After the call: what the provider said. KEYS: block, aimd, inflight, waits.
# ARGV: outcome ("ok" | "limited" | "other"), block_s (0: none), cap (configured, 0:
# none), aimd_ttl_s, model.
# A block only ever moves later. On "limited" (a 429) the concurrency limit halves
# (at most once a second: the 429s of one burst are one signal), starting from the
# calls in flight; after `limit` successes in a row it grows by one, and at the
# configured cap it is dropped (the configured cap rules again). Returns the limit
# (0: none).
OBSERVE = (
    _NOW
    + """
local block, cap, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if block > 0 then
  local until_ = now + block
  if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
    redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(block * 1000) + 1)
  end
end
local limit = tonumber(redis.call('HGET', KEYS[2], 'limit') or '0')
if ARGV[1] == 'limited' then
  redis.call('HINCRBY', KEYS[4], ARGV[5] .. '|429', 1)
  local cut_at = tonumber(redis.call('HGET', KEYS[2], 'cut_at') or '0')
  if now - cut_at >= 1 then
    if limit == 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
      limit = math.max(redis.call('ZCARD', KEYS[3]), 1)
      if cap > 0 and cap < limit then limit = cap end
    end
    limit = math.max(1, math.floor(limit / 2))
    redis.call('HSET', KEYS[2], 'limit', limit, 'good', 0, 'cut_at', tostring(now))
  end
  redis.call('EXPIRE', KEYS[2], ttl)
elseif ARGV[1] == 'ok' and limit > 0 then
  local good = redis.call('HINCRBY', KEYS[2], 'good', 1)
  if good >= limit then
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
