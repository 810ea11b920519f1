"""The events of the attempt the call loop is running (SPEC "Streaming").

A job that streams writes them always; another only while some API process follows
it (Watched): a drain that nobody follows makes no event writes at all.

Entries are sent in order, by one task per attempt that takes everything emitted since
its last write in one script call: a delta goes out at once when nothing is being
sent, and deltas that arrive while a write is in flight go together in the next, so a
fast stream costs a few round trips, not one a token. Nothing here raises into the
call: a Redis that is away loses the live events, never the job (its end state is in
Postgres, where a follower reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from aijobs.settings import get_settings
from aijobs.streaming.events import (
    APPEND,
    WATCH_CHANNEL,
    WATCHED_KEY,
    script_args,
    seq_key,
    stream_key,
)

log = logging.getLogger("aijobs.worker")

# How long the end of an attempt waits for its events to be written.
FLUSH_WAIT_S = 5.0

_scripts: dict[asyncio.AbstractEventLoop, Any] = {}
_watchers: dict[asyncio.AbstractEventLoop, Watched] = {}


class Watched:
    """This worker's view of the jobs API processes follow (WATCHED_KEY): the hash read
    once, then kept by its channel's announcements; read again after a lost
    connection. A job announced a moment before its claim may be missed: its follower
    then sees its end, not that attempt's start."""

    def __init__(self, url: str) -> None:
        self.redis = aioredis.Redis.from_url(url, socket_timeout=None, health_check_interval=30)
        self.counts: dict[str, int] = {}
        self.task = asyncio.create_task(self._keep(), name="aijobs-watched-jobs")

    def __contains__(self, job_id: uuid.UUID) -> bool:
        return self.counts.get(str(job_id), 0) > 0

    async def _keep(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(WATCH_CHANNEL)
                    await pubsub.get_message(timeout=5)  # the subscription, confirmed
                    found = await self.redis.hgetall(WATCHED_KEY)
                    self.counts = {_text(k): int(v) for k, v in found.items()}
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=None
                        )
                        if message is not None and message["type"] == "message":
                            self._change(_text(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("job events: the watched jobs' channel was lost", exc_info=True)
                await asyncio.sleep(1)

    def _change(self, announced: str) -> None:
        job_id = announced[1:]
        count = self.counts.get(job_id, 0) + (1 if announced[0] == "+" else -1)
        if count > 0:
            self.counts[job_id] = count
        else:
            self.counts.pop(job_id, None)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def watched(job_id: uuid.UUID) -> bool:
    """Whether some API process follows the job now (as far as this worker knows)."""
    loop = asyncio.get_running_loop()
    found = _watchers.get(loop)
    if found is None or found.task.done():
        found = _watchers[loop] = Watched(get_settings().required_redis_url)
    return job_id in found


def _script() -> Any:
    loop = asyncio.get_running_loop()
    script = _scripts.get(loop)
    if script is None:
        client = aioredis.Redis.from_url(get_settings().required_redis_url, socket_timeout=5)
        script = _scripts[loop] = client.register_script(APPEND)
    return script


class AttemptEvents:
    """Emit entries for one job; `close()` waits until they are written."""

    def __init__(self, job_id: uuid.UUID, live: bool) -> None:
        self.keys = [stream_key(job_id), seq_key(job_id)]
        self.job_id = job_id
        self.live = live  # written only when the job streams or is followed
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.sender: asyncio.Task[None] | None = None
        self.broken = False

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.broken or not self.live:
            return
        self.pending.append((kind, data))
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._send())

    def delta(self, text: str) -> None:
        if text:
            self.emit("delta", {"text": text})

    async def _send(self) -> None:
        while self.pending:
            entries, self.pending = self.pending, []
            # An attempt's first write checks for one cut off before it (see APPEND).
            try:
                await _script()(keys=self.keys, args=script_args(entries))
            except (redis.exceptions.RedisError, OSError):
                log.warning("job %s: its events could not be written", self.job_id, exc_info=True)
                self.broken, self.pending = True, []

    async def close(self) -> None:
        if self.sender is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FLUSH_WAIT_S):
                    await asyncio.shield(self.sender)
