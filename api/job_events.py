"""Following a job's events in an API process (SPEC "Streaming").

One Redis pub/sub connection per process (the Hub) hears the entries of every job some
request here follows, and hands each to those requests' queues; a request catches up
from the job's stream (XRANGE) after its subscription is confirmed, and again whenever
the connection was lost or an id was skipped, so no event is lost or repeated. Once a
second the hub asks Postgres, in one statement for all the jobs followed here, which
have ended: a job that ended without a `done` entry (cancelled queued, a dedup follower
finished with its leader, failed by the sweeper) still ends its stream. Many open
streams cost one pub/sub connection and one query a second, not one each
(docs/scaling.md, "Streaming").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from aijobs.db import autocommit
from aijobs.jobs.transitions import TERMINAL
from aijobs.settings import get_settings
from aijobs.streaming.events import (
    ANNOUNCE,
    WATCH_CHANNEL,
    WATCHED_KEY,
    Event,
    from_entry,
    from_message,
    stream_key,
)
from api.routes import jobs

log = logging.getLogger("aijobs.api")

# How long a follower waits for its subscription to be confirmed before catching up
# anyway (a later catch-up finds what it missed).
CONFIRM_WAIT_S = 2.0
# How often the hub asks which followed jobs have ended.
ENDED_CHECK_S = 1.0
# A follower that hears nothing this long reads the stream again (a safety net: the
# channel and the ended check tell it everything else).
QUIET_S = 30.0
# What one catch-up reads at most (a job's stream is bounded by its output anyway).
CATCH_UP_COUNT = 10_000
# Redis connections for catch-ups, shared by all followers: a burst of new streams
# waits for one rather than failing (redis-py's default pool raises when it is out).
POOL_SIZE = 32

ENDED = Event(-1, "ended", {})  # put in a follower's queue: its job has ended
Queue = asyncio.Queue[Event | None]  # None: entries may have been missed, catch up

_ENDED_SQL = text("SELECT id FROM jobs WHERE id = ANY(:ids) AND status = ANY(:terminal)")


class Hub:
    """This process's subscriptions to job channels, shared by every follower."""

    def __init__(self, url: str) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=None, health_check_interval=30
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self.pubsub = self.redis.pubsub()
        self.announce = self.redis.register_script(ANNOUNCE)
        self.queues: dict[str, set[Queue]] = {}
        self.jobs: dict[str, uuid.UUID] = {}  # channel -> the job followed on it
        self.confirmed: dict[str, asyncio.Event] = {}
        # One (un)subscribe at a time: concurrent first subscribes would each open a
        # pub/sub connection of their own (redis-py does not guard it).
        self.subscribing = asyncio.Lock()
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def join(self, channel: str, job_id: uuid.UUID) -> Queue:
        """A queue that receives the channel's entries from now on (once confirmed)."""
        queue: Queue = asyncio.Queue()
        followers = self.queues.setdefault(channel, set())
        followers.add(queue)
        self.jobs[channel] = job_id
        if len(followers) == 1:
            self.confirmed[channel] = asyncio.Event()
            await self._announce(1, job_id)  # the workers write its events from now on
            async with self.subscribing:
                await self.pubsub.subscribe(channel)
            self.wake.set()
        if not self.tasks or any(task.done() for task in self.tasks):
            self.tasks = [
                asyncio.create_task(self._read(), name="aijobs-job-events"),
                asyncio.create_task(self._check_ended(), name="aijobs-job-events-ended"),
            ]
        confirmed = self.confirmed.get(channel)
        if confirmed is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONFIRM_WAIT_S):
                    await confirmed.wait()
        return queue

    async def leave(self, channel: str, queue: Queue) -> None:
        followers = self.queues.get(channel)
        if followers is None:
            return
        followers.discard(queue)
        if not followers:
            del self.queues[channel]
            job_id = self.jobs.pop(channel, None)
            self.confirmed.pop(channel, None)
            if job_id is not None:
                await self._announce(-1, job_id)
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                async with self.subscribing:
                    if channel not in self.queues:  # nobody joined again meanwhile
                        await self.pubsub.unsubscribe(channel)

    async def _announce(self, change: int, job_id: uuid.UUID) -> None:
        """The job is followed here now (+1), or no longer (-1): WATCHED_KEY and its
        channel, read by the workers (worker/job_events.py)."""
        try:
            await self.announce(keys=[WATCHED_KEY, WATCH_CHANNEL], args=[str(job_id), change])
        except (redis.exceptions.RedisError, OSError):
            log.warning("job events: could not announce job %s", job_id, exc_info=True)

    async def _check_ended(self) -> None:
        """Once a second, one statement: which of the jobs followed here have ended."""
        while True:
            await asyncio.sleep(ENDED_CHECK_S)
            if not self.jobs:
                continue
            followed = dict(self.jobs)
            try:
                ended = await run_in_threadpool(_ended, list(followed.values()))
            except Exception:
                log.warning("job events: the ended check failed", exc_info=True)
                continue
            for channel, job_id in followed.items():
                if job_id in ended:
                    for queue in self.queues.get(channel, ()):
                        queue.put_nowait(ENDED)

    async def _read(self) -> None:
        while True:
            if not self.queues:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                message = await self.pubsub.get_message(timeout=1.0)
            except (redis.exceptions.RedisError, OSError):
                log.warning("job events: the pub/sub connection was lost", exc_info=True)
                self._tell_all(None)  # each follower catches up from the streams
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
        if message["type"] == "subscribe":
            confirmed = self.confirmed.get(channel)
            if confirmed is not None:
                confirmed.set()
            # A resubscription after a reconnect: entries may have been missed.
            for queue in self.queues.get(channel, ()):
                queue.put_nowait(None)
        elif message["type"] == "message":
            event = from_message(message["data"])
            for queue in self.queues.get(channel, ()):
                queue.put_nowait(event)

    def _tell_all(self, item: Event | None) -> None:
        for followers in self.queues.values():
            for queue in followers:
                queue.put_nowait(item)

    async def entries(self, channel: str, after: int) -> list[Event]:
        """The stream's entries with ids above `after`."""
        rows = await self.redis.xrange(channel, min=f"0-{after + 1}", count=CATCH_UP_COUNT)
        return _events(rows)

    async def last(self, channel: str) -> Event | None:
        found = _events(await self.redis.xrevrange(channel, count=1))
        return found[0] if found else None


def _ended(job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    with autocommit() as conn:
        rows = conn.execute(_ENDED_SQL, {"ids": job_ids, "terminal": sorted(TERMINAL)})
        return {uuid.UUID(str(row[0])) for row in rows}


def _events(rows: Any) -> list[Event]:
    return [from_entry(entry_id, fields) for entry_id, fields in rows or () if fields]


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """This event loop's hub (one per API process)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub(get_settings().required_redis_url)
    return found


async def follow(
    tenant_id: uuid.UUID, job_id: uuid.UUID, after: int | None
) -> AsyncIterator[Event]:
    """The job's events, in order, ending with `done` (its data: the job object).

    after=None: a new follower (an ended job gives only `done`; else every event from
    the start, or a `status` with id 0 when there is none yet); after=N: the events
    with ids above N, then `done` once the job has ended. The job must exist and be
    the tenant's (the caller has read it)."""
    events = hub()
    channel = stream_key(job_id)
    queue = await events.join(channel, job_id)
    try:
        async for event in _follow(events, queue, channel, tenant_id, job_id, after):
            yield event
    finally:
        await events.leave(channel, queue)


async def _follow(
    events: Hub,
    queue: Queue,
    channel: str,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    after: int | None,
) -> AsyncIterator[Event]:
    job = await run_in_threadpool(jobs.read, tenant_id, job_id)
    last_id = after or 0
    if after is None and job["status"] in TERMINAL:
        yield await _done(events, channel, job, 0)
        return
    if after is None and await events.last(channel) is None:
        yield Event(0, "status", {"status": job["status"]})
    pending = await events.entries(channel, last_id)
    from_stream = True  # entries read from the stream have no gaps but real ones
    while True:
        skipped = False
        for event in pending:
            if event.id <= last_id:
                continue  # heard twice: by a catch-up and on the channel
            if event.id > last_id + 1 and not from_stream:
                skipped = True  # an entry was missed on the channel
                break
            last_id = event.id
            if event.type == "done":
                job = await run_in_threadpool(jobs.read, tenant_id, job_id)
                if job["status"] in TERMINAL:  # else a re-run has reopened it since
                    yield Event(event.id, "done", job)
                    return
                continue
            yield event
        if skipped:
            pending, from_stream = await events.entries(channel, last_id), True
            continue
        try:
            async with asyncio.timeout(QUIET_S):
                heard = [await queue.get()]
        except TimeoutError:
            heard = [None]  # read the stream again
        while not queue.empty():  # take what else has arrived in one pass
            heard.append(queue.get_nowait())
        if ENDED in heard:
            pending, from_stream = await events.entries(channel, last_id), True
            if not pending:  # it ended without a done entry (or that is still to come)
                job = await run_in_threadpool(jobs.read, tenant_id, job_id)
                if job["status"] in TERMINAL:
                    yield await _done(events, channel, job, last_id)
                    return
        elif None in heard:
            pending, from_stream = await events.entries(channel, last_id), True
        else:
            pending, from_stream = [event for event in heard if event is not None], False


async def _done(events: Hub, channel: str, job: dict[str, Any], seen: int) -> Event:
    """`done` for an ended job: the id of its done entry, else one past the last entry."""
    tail = await events.last(channel)
    if tail is None:
        return Event(seen + 1, "done", job)
    return Event(tail.id if tail.type == "done" else tail.id + 1, "done", job)
