"""The worker's maintenance loop: renew the leases of its running jobs, and sweep.

Every worker runs it; a Postgres advisory lock lets one sweep at a time. The
sweeper publishes what Postgres says must run and the broker may have lost.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from aijobs import execution, sweeper
from aijobs.broker import QUEUE, RUN_JOB_TASK
from aijobs.db import autocommit, get_engine
from aijobs.settings import get_settings
from worker.identity import worker_id

log = logging.getLogger("aijobs.maintenance")


def _queue_length() -> int:
    """Messages waiting in the broker; declaring also restores a queue lost to FLUSHDB."""
    from worker.celery_app import app

    with app.connection_for_write() as conn:
        declared = conn.default_channel.queue_declare(QUEUE, passive=False, durable=True)
        return int(declared.message_count)


def sweep_once() -> int:
    from worker.celery_app import app

    settings = get_settings()
    queue_length = _queue_length()
    with get_engine().begin() as conn:
        ids = sweeper.due_for_publish(
            conn, queue_length=queue_length, stale_s=settings.requeue_after_s
        )
        if random.random() < 0.02:  # now and then is enough
            sweeper.purge_expired_cache(conn)
    for job_id in ids:
        app.send_task(RUN_JOB_TASK, args=[str(job_id)], queue=QUEUE)
    if ids:
        log.info("sweeper published %d job(s)", len(ids))
    return len(ids)


class Maintenance:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="aijobs-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        settings = get_settings()
        renew_every = settings.lease_s / 4
        last_renew = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now - last_renew >= renew_every:
                    with autocommit() as conn:
                        execution.renew_leases(conn, worker_id(), settings.lease_s)
                    last_renew = now
                sweep_once()
            except Exception:
                log.exception("maintenance pass failed; retrying")
            self._stop.wait(settings.sweep_interval_s)


maintenance = Maintenance()
