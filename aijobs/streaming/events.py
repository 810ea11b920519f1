"""A job's events (SPEC "Streaming"): what the worker writes and the API reads.

Each job has a Redis stream `aijobs:ev:{job}` whose entries have the ids `0-1`, `0-2`,
… (an event's SSE `id` is that number), written by one script that also publishes each
entry on the job's channel, so an API process following the job hears it at once and
any other API process can read the stream from any point (`Last-Event-ID`). Postgres
keeps the durable end state: the `done` entry holds no job; the API reads the job when
it sends `done`.

A job asking to stream always writes its events; another writes them only while an
API process follows it (WATCHED_KEY): a follower that joins mid-attempt may miss that
attempt's `status` and `attempt` entries, never its end.

Entry types: `status` ({"status"}), `attempt` ({"number", "model"}), `delta`
({"text"}), `reset` ({"attempt", "code"}: the attempt being streamed failed; its deltas
are void), `done` ({}). An attempt that starts after one that never ended (a worker
killed mid-call) gets its `reset` from the script itself: the stream's last entry
being an `attempt` or a `delta` means an attempt was cut off.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

TYPES = ("status", "attempt", "delta", "reset", "done")
# How long a job's events stay readable after the last was written (an hour: a
# 50,000-job batch must not hold Redis for a day). The end state outlives them in
# Postgres: an ended job answers `done` from there. Its counter lives longer, so a job
# that waits an hour and runs again goes on numbering where it was.
TTL_S = 3600
SEQ_TTL_S = 7 * 24 * 3600

# KEYS: the stream, its counter. ARGV: their ttls, then per entry a type and its data.
# When the entries start an attempt and the stream's last entry is an attempt or a
# delta, a reset goes first (the attempt before was cut off). Returns the last id.
APPEND = """
local first = 3
local function add(kind, data)
  local n = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], '0-' .. n, 't', kind, 'd', data)
  redis.call('PUBLISH', KEYS[1], n .. ' ' .. kind .. ' ' .. data)
  return n
end
local last = 0
local starts = false
for i = first, #ARGV - 1, 2 do
  if ARGV[i] == 'attempt' then starts = true end
end
if starts then
  local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #tail > 0 then
    local fields = tail[1][2]
    local kind = fields[2]
    if kind == 'attempt' or kind == 'delta' then
      last = add('reset', '{"attempt": null, "code": "interrupted"}')
    end
  end
end
for i = first, #ARGV - 1, 2 do
  last = add(ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return last
"""


# The jobs API processes follow now (a hash: job id -> how many processes), and the
# channel where each change is announced ("+<id>", "-<id>"): a job that does not
# stream writes its events only while it is followed, so a drain nobody watches pays
# nothing for them.
WATCHED_KEY = "aijobs:ev:watched"
WATCH_CHANNEL = "aijobs:ev:watch"
# KEYS: WATCHED_KEY, WATCH_CHANNEL. ARGV: the job id, +1 or -1.
ANNOUNCE = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local sign = '+'
if tonumber(ARGV[2]) < 0 then sign = '-' end
redis.call('PUBLISH', KEYS[2], sign .. ARGV[1])
return n
"""


def stream_key(job_id: uuid.UUID | str) -> str:
    """The job's stream; also the channel its entries are published on."""
    return f"aijobs:ev:{job_id}"


def seq_key(job_id: uuid.UUID | str) -> str:
    return f"aijobs:ev:{job_id}:n"


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]


def encode(kind: str, data: dict[str, Any]) -> str:
    if kind not in TYPES:
        raise ValueError(f"not an event type: {kind}")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def script_args(entries: list[tuple[str, dict[str, Any]]]) -> list[str | int]:
    """APPEND's ARGV for these entries."""
    args: list[str | int] = [TTL_S, SEQ_TTL_S]
    for kind, data in entries:
        args += [kind, encode(kind, data)]
    return args


def from_entry(entry_id: Any, fields: Any) -> Event:
    """An XRANGE entry (ids `0-n`, fields t and d; bytes or str, as redis-py gives them)
    as an Event."""
    raw_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    kind = fields.get(b"t", fields.get("t", b""))
    data = fields.get(b"d", fields.get("d", b"{}"))
    return Event(
        id=int(raw_id.partition("-")[2]),
        type=kind.decode() if isinstance(kind, bytes) else str(kind),
        data=json.loads(data),
    )


def from_message(message: str | bytes) -> Event:
    """A published entry ("<n> <type> <data>") as an Event."""
    text = message.decode() if isinstance(message, bytes) else message
    number, kind, data = text.split(" ", 2)
    return Event(id=int(number), type=kind, data=json.loads(data))
