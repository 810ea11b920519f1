"""A tenant's jobs waiting for budget (SPEC: a call that fits alone waits for the calls
in flight to settle): flagged in Redis when one starts to wait, and woken at the end of
the tenant's calls that held a reservation. The sweeper wakes them on every pass too,
so a lost flag only delays a wake by a pass."""

from __future__ import annotations

import logging
import uuid

from aijobs.db import autocommit
from aijobs.jobs import transitions
from aijobs.scheduling import fair_queue
from worker import enqueue

log = logging.getLogger("aijobs.worker")


def mark(tenant_id: uuid.UUID) -> None:
    """A job of the tenant waits for budget: the ends of its calls look for it."""
    try:
        fair_queue.mark_budget_waiters(fair_queue.client(), tenant_id)
    except Exception:  # then the sweeper's pass wakes it, within a second
        log.warning("tenant %s: budget waiters not flagged", tenant_id, exc_info=True)


def wake(tenant_id: uuid.UUID) -> None:
    """After the settle of a call that held a reservation: the tenant's jobs waiting for
    budget that fit now are made due and published. Never raises."""
    try:
        with autocommit() as conn:
            woken = transitions.wake_budget_waiters(conn, tenant_id)
        if woken:
            enqueue.publish_jobs(woken)
    except Exception:
        log.warning("tenant %s: waiting jobs left to the sweeper", tenant_id, exc_info=True)
