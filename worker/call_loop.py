"""The worker's call loop: one asyncio loop per worker process, in its own thread,
where every job attempt runs as a coroutine.

AI calls spend seconds waiting on the network. A coroutine waits for almost nothing,
where a thread a call costs memory and contends for the GIL: one process holds
thousands of calls in flight on one loop. Celery's consumer (the solo pool) only
hands each attempt to the loop, and blocks while all `slots` (`--concurrency`) are
taken, so the worker takes no more messages than it can run. The claim and settle
statements run on the loop's database threads, one per pooled connection, so no
burst opens more connections than the pool holds. Webhook deliveries (blocking HTTP
behind the SSRF guard) run on threads of their own and take slots too.

Measured against claiming in the consumer itself, or on dedicated claim threads,
this is the fastest (docs/scaling.md). Its cost: under a backlog, an attempt may
wait in the loop for its claim longer than AIJOBS_REQUEUE_AFTER_S, and the sweeper
then publishes its job again; that message finds the job taken and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from worker import runner, webhook_runner

log = logging.getLogger("aijobs.worker")


class CallLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._webhooks: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(1)
        self._idle = threading.Condition()
        self._running = 0

    def start(self, *, slots: int, db_threads: int, webhook_threads: int) -> None:
        with self._lock:
            if self._loop is not None:
                return
            loop = asyncio.new_event_loop()
            loop.set_default_executor(
                ThreadPoolExecutor(max_workers=db_threads, thread_name_prefix="aijobs-db")
            )
            self._webhooks = ThreadPoolExecutor(
                max_workers=webhook_threads, thread_name_prefix="aijobs-webhook"
            )
            self._slots = threading.BoundedSemaphore(slots)
            threading.Thread(target=loop.run_forever, name="aijobs-calls", daemon=True).start()
            self._loop = loop

    def run_job(self, job_id: uuid.UUID, owner: str) -> None:
        """Start one attempt of a job on the loop; blocks while every slot is taken."""
        self._start(lambda: self._job(job_id, owner))

    async def _job(self, job_id: uuid.UUID, owner: str) -> str:
        started = await asyncio.to_thread(runner.claim, job_id, owner)
        if isinstance(started, str):
            return started
        return await runner.complete(started, owner)

    def deliver_webhook(self, delivery_id: int, owner: str) -> None:
        """Start one attempt of a webhook delivery; blocks while every slot is taken."""
        self._start(lambda: self._deliver(delivery_id, owner))

    async def _deliver(self, delivery_id: int, owner: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._webhooks, webhook_runner.deliver, delivery_id, owner
        )

    def _start(self, work: Callable[[], Coroutine[Any, Any, str]]) -> None:
        if self._loop is None:
            raise RuntimeError("the call loop is not started")
        self._slots.acquire()
        with self._idle:
            self._running += 1
        future = asyncio.run_coroutine_threadsafe(work(), self._loop)
        future.add_done_callback(self._done)

    def _done(self, future: Future[str]) -> None:
        self._slots.release()
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
