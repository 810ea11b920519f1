"""The worker's call loop: one asyncio loop per worker process, in its own thread,
where every job attempt runs as a coroutine.

AI calls spend seconds waiting on the network. A coroutine waits for almost nothing,
where a thread a call costs memory and contends for the GIL: one process holds
thousands of calls in flight on one loop. Celery's consumer (the solo pool) only
hands each attempt to the loop, and blocks while all `slots` (`--concurrency`) are
taken, so the worker takes no more messages than it can run. A message is a token:
the job is picked by the fair queue (aijobs/scheduling/fair_queue.py) and claimed in
one database-thread call, when a slot is free. The claim and settle statements run
on the loop's database threads, each of which keeps one connection, so no burst
opens more connections than the pool holds.

Webhook deliveries (blocking HTTP behind the SSRF guard) run on threads of their own,
AIJOBS_WEBHOOK_THREADS of them, and never take a job's slot. Handing one over never
blocks the consumer either: when every webhook thread is busy, the delivery is
deferred in Postgres (pending, due a little later) and the sweeper publishes it
again, so slow receivers cannot stop job messages from being taken.

Measured against claiming in the consumer itself, or on dedicated claim threads,
this is the fastest (docs/scaling.md). Under a backlog a job waits in the fair
queue, not in the loop: it is picked only when a database thread is free to claim it.

The loop knows which jobs and deliveries it is working on: the maintenance loop
renews the leases of exactly those, so an attempt that died can never hold a job.
On SIGTERM it stops claiming at once: work handed to it but not yet claimed is
published again for another worker, and the calls in flight finish (drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from aijobs.db import hold_connections
from aijobs.scheduling import fair_queue
from worker import runner, turns, webhook_runner

log = logging.getLogger("aijobs.worker")

Key = TypeVar("Key", uuid.UUID, int)
Republish = Callable[[str, Any], None]  # (kind "job" (a token) | "delivery", id)


class CallLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._webhooks: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(1)
        self._senders = threading.BoundedSemaphore(1)  # one per webhook thread
        self._idle = threading.Condition()
        self._running = 0
        self._stopping = False
        self._republish: Republish = lambda kind, key: None
        self._jobs: Counter[uuid.UUID] = Counter()  # in this process now
        self._deliveries: Counter[int] = Counter()
        self._turns: dict[uuid.UUID, fair_queue.Turn] = {}  # their places to renew
        self._tracked = threading.Lock()

    def start(
        self, *, slots: int, db_threads: int, webhook_threads: int, republish: Republish
    ) -> None:
        """`republish(kind, id)` sends a message again (work taken but never claimed)."""
        with self._lock:
            if self._loop is not None:
                return
            self._republish = republish
            loop = asyncio.new_event_loop()
            loop.set_default_executor(
                ThreadPoolExecutor(
                    max_workers=db_threads,
                    thread_name_prefix="aijobs-db",
                    initializer=hold_connections,  # one connection each, kept
                )
            )
            self._webhooks = ThreadPoolExecutor(
                max_workers=webhook_threads, thread_name_prefix="aijobs-webhook"
            )
            self._slots = threading.BoundedSemaphore(slots)
            self._senders = threading.BoundedSemaphore(webhook_threads)
            threading.Thread(target=loop.run_forever, name="aijobs-calls", daemon=True).start()
            self._loop = loop

    def run_next(self, owner: str) -> None:
        """Start an attempt of the job the fair queue picks, on the loop; blocks while
        every slot is taken (so the pick is made when a slot is free)."""
        self._start(lambda: self._next(owner))

    async def _next(self, owner: str) -> str:
        taken = await asyncio.to_thread(
            self._unless_stopping, "job", None, lambda: turns.take(owner)
        )
        if taken is None or isinstance(taken, str):
            return taken or "nothing to run"
        turn, started = taken
        held = not isinstance(started, str) and started.job.budget_held
        try:
            with self._tracking(self._jobs, turn.job_id):
                with self._tracked:
                    self._turns[turn.job_id] = turn
                if isinstance(started, str):
                    return started
                return await runner.complete(started, owner)
        finally:
            with self._tracked:
                self._turns.pop(turn.job_id, None)
            # One hop: the place back, and (its call held a reservation) the tenant's
            # jobs waiting for budget woken.
            await asyncio.to_thread(turns.give_back, turn, held)

    def _unless_stopping(self, kind: str, key: Any, claim: Callable[[], Any]) -> Any:
        """Claim, in a database thread; when the worker is stopping, hand it back."""
        if self._stopping:
            try:
                self._republish(kind, key)
            except Exception:  # the sweeper publishes it when the broker is back
                log.warning("%s %s: could not be handed back", kind, key, exc_info=True)
            return "handed back"
        return claim()

    def deliver_webhook(self, delivery_id: int, owner: str) -> None:
        """Start one attempt of a webhook delivery on a webhook thread; never blocks:
        with every webhook thread busy, the delivery is deferred in Postgres instead."""
        if self._loop is None:
            raise RuntimeError("the call loop is not started")
        if self._senders.acquire(blocking=False):
            self._submit(self._deliver(delivery_id, owner), self._senders)
        else:
            self._submit(asyncio.to_thread(webhook_runner.defer, delivery_id), None)

    async def _deliver(self, delivery_id: int, owner: str) -> str:
        loop = asyncio.get_running_loop()
        with self._tracking(self._deliveries, delivery_id):
            result: str = await loop.run_in_executor(
                self._webhooks,
                self._unless_stopping,
                "delivery",
                delivery_id,
                lambda: webhook_runner.deliver(delivery_id, owner),
            )
            return result

    @contextlib.contextmanager
    def _tracking(self, counter: Counter[Key], key: Key) -> Iterator[None]:
        with self._tracked:
            counter[key] += 1
        try:
            yield
        finally:
            with self._tracked:
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

    def in_flight(self) -> tuple[list[uuid.UUID], list[int]]:
        """The jobs and deliveries this process is working on now (their leases to renew)."""
        with self._tracked:
            return list(self._jobs), list(self._deliveries)

    def turns(self) -> list[fair_queue.Turn]:
        """The fair queue's places this process holds (renewed with the leases)."""
        with self._tracked:
            return list(self._turns.values())

    def stop_claiming(self) -> None:
        """From now on, work handed over is published again instead of claimed."""
        self._stopping = True

    def _start(self, work: Callable[[], Coroutine[Any, Any, str]]) -> None:
        if self._loop is None:
            raise RuntimeError("the call loop is not started")
        self._slots.acquire()
        self._submit(work(), self._slots)

    def _submit(
        self, work: Coroutine[Any, Any, str], held: threading.BoundedSemaphore | None
    ) -> None:
        """Run `work` on the loop; `held` (a slot taken for it) is released when it ends."""
        assert self._loop is not None
        with self._idle:
            self._running += 1
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        future.add_done_callback(lambda done: self._done(done, held))

    def _done(self, future: Future[str], held: threading.BoundedSemaphore | None) -> None:
        if held is not None:
            held.release()
        with self._idle:
            self._running -= 1
            self._idle.notify_all()
        error = future.exception()
        if error is not None:
            # Its lease lapses and the sweeper hands the work out again.
            log.error("an attempt raised", exc_info=error)

    def drain(self, timeout_s: float) -> bool:
        """Wait for the attempts in flight to end (warm shutdown)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


call_loop = CallLoop()
