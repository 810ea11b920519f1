"""The events of the attempt the call loop is running (SPEC "Streaming").

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
from aijobs.streaming.events import APPEND, script_args, seq_key, stream_key

log = logging.getLogger("aijobs.worker")

# How long the end of an attempt waits for its events to be written.
FLUSH_WAIT_S = 5.0

_scripts: dict[asyncio.AbstractEventLoop, Any] = {}


def _script() -> Any:
    loop = asyncio.get_running_loop()
    script = _scripts.get(loop)
    if script is None:
        client = aioredis.Redis.from_url(get_settings().required_redis_url, socket_timeout=5)
        script = _scripts[loop] = client.register_script(APPEND)
    return script


class AttemptEvents:
    """Emit entries for one job; `close()` waits until they are written."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.keys = [stream_key(job_id), seq_key(job_id)]
        self.job_id = job_id
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.sender: asyncio.Task[None] | None = None
        self.broken = False

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.broken:
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
