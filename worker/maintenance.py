"""The worker's maintenance loop: renew the leases of the jobs and webhook deliveries
its call loop is working on (only those), and sweep.

Every worker runs it; a Postgres advisory lock lets one sweep at a time. The
sweeper publishes what Postgres says must run (jobs, due webhook deliveries) and
the broker may have lost.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time

from celery import Celery

from aijobs.broker import DELIVER_WEBHOOK_TASK, QUEUE, WEBHOOK_QUEUE
from aijobs.db import autocommit, get_engine
from aijobs.evals import advance as evals
from aijobs.jobs import sweeper, transitions
from aijobs.scheduling import fair_queue
from aijobs.settings import get_settings
from aijobs.webhooks import deliveries
from worker import enqueue, provider_quota, turns
from worker.call_loop import call_loop
from worker.identity import worker_id

log = logging.getLogger("aijobs.maintenance")


def _queue_length(app: Celery, queue: str) -> int:
    """Messages waiting in the broker; declaring also restores a queue lost to FLUSHDB."""
    with app.connection_for_write() as conn:
        declared = conn.default_channel.queue_declare(queue, passive=False, durable=True)
        return int(declared.message_count)


def sweep_webhooks_once(app: Celery) -> int:
    settings = get_settings()
    queue_length = _queue_length(app, WEBHOOK_QUEUE)
    with get_engine().begin() as conn:
        ids = deliveries.due_for_publish(
            conn,
            queue_length=queue_length,
            stale_s=settings.requeue_after_s,
            max_retries=len(settings.webhook_retry_schedule),
        )
    for delivery_id in ids:
        app.send_task(DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=WEBHOOK_QUEUE)
    return len(ids)


# Tokens the sweeper publishes at most per pass (a FLUSHDB lost them all: a few passes).
MAX_OWED_TOKENS = 1000


def sweep_once(app: Celery) -> int:
    """Publish what Postgres says must run and the fair queue does not hold, and the
    tokens the fair queue is owed (lost ones, parked ones whose tenant has room now)."""
    settings = get_settings()
    _queue_length(app, QUEUE)  # declares the queue again after a FLUSHDB
    with get_engine().begin() as conn:
        if not sweeper.lock(conn):
            return 0
        queued, owed = fair_queue.reconcile(fair_queue.client(), QUEUE)
        ids = sweeper.due_for_publish(conn, queue_length=queued, stale_s=settings.requeue_after_s)
        ids += evals.sweep(conn)  # running evals scored, their judge jobs made (bounded)
        entries = fair_queue.entries_for(conn, ids)
        if random.random() < 0.02:  # now and then is enough
            sweeper.purge_expired_cache(conn)
    enqueue.push_entries(entries)
    enqueue.publish_tokens(min(owed, MAX_OWED_TOKENS))
    if ids:
        log.info("sweeper published %d job(s)", len(ids))
    return len(ids)


class RetentionPurge:
    """Purges expired jobs in small batches, at most every sweeper.PURGE_EVERY_S unless
    the last batch was full (a backlog drains a batch per pass)."""

    def __init__(self) -> None:
        self._next = 0.0

    def run_if_due(self) -> int:
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + sweeper.PURGE_EVERY_S  # a failing purge waits too
        # Its own one-statement transaction, outside the sweep's: row locks are skipped,
        # never waited for, so it holds up no claim or settle.
        with autocommit() as conn:
            purged = sweeper.purge_expired(conn, get_settings().retention_days)
        if purged >= sweeper.PURGE_BATCH:
            self._next = now
        if purged:
            log.info("retention purged %d job(s)", purged)
        return purged


retention = RetentionPurge()


class Maintenance:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, app: Celery) -> None:
        """Run the loop in a thread, publishing through `app`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._loop, args=(app,), name="aijobs-maintenance", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, app: Celery) -> None:
        settings = get_settings()
        renew_every = settings.lease_s / 4
        last_renew = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now - last_renew >= renew_every:
                    with contextlib.suppress(Exception):  # they lapse; the calls go on
                        provider_quota.renew_slots()
                    with contextlib.suppress(Exception):  # they lapse; the calls go on
                        fair_queue.renew(fair_queue.client(), call_loop.turns(), turns.place_s())
                    jobs, sends = call_loop.in_flight()
                    with autocommit() as conn:
                        transitions.renew_leases(conn, worker_id(), jobs, settings.lease_s)
                        deliveries.renew_leases(conn, worker_id(), sends, settings.lease_s)
                    last_renew = now
                sweep_once(app)
                sweep_webhooks_once(app)
                retention.run_if_due()
            except Exception:
                log.exception("maintenance pass failed; retrying")
            self._stop.wait(settings.sweep_interval_s)


maintenance = Maintenance()
