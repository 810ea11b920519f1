"""A free slot's turn: the job the fair queue picks for it, claimed in the same database
thread, and the tenant's in-flight place given back when the attempt ends."""

from __future__ import annotations

import logging
import uuid

from aijobs import metrics
from aijobs.scheduling import fair_queue
from aijobs.settings import get_settings
from worker import budget_waiters, enqueue, runner

log = logging.getLogger("aijobs.worker")

# A place is held a lease and this much more; the maintenance loop renews it.
PLACE_GRACE_S = 10.0


def place_s() -> float:
    return get_settings().lease_s + PLACE_GRACE_S


def take(owner: str) -> tuple[fair_queue.Turn, runner.Started | str] | None:
    """The job to start now and its claim; None when no job can start (no tenant under
    its cap has one queued, or Redis cannot be read: the sweeper re-issues the token)."""
    try:
        turn = fair_queue.next_turn(fair_queue.client(), place_s())
    except Exception:
        log.warning("the fair queue could not be read", exc_info=True)
        return None
    if turn is None:
        return None
    metrics.TIME_TO_START.labels(turn.priority).observe(turn.waited_s)
    try:
        return turn, runner.claim(turn.job_id, owner)
    except BaseException:
        give_back(turn)
        raise


def give_back(turn: fair_queue.Turn, wake_waiters: bool = False) -> None:
    """The attempt ended: the tenant's place is free (and a token parked for it, if any,
    is published again); with `wake_waiters` (its call held a budget reservation), the
    tenant's jobs waiting for budget that fit now are woken, if it may have any. Never
    raises: a place not given back lapses by itself, and the sweeper wakes waiters."""
    try:
        released = fair_queue.release(fair_queue.client(), turn)
    except Exception:
        log.warning("job %s: its place in the fair queue lapses instead", turn.job_id)
        released = fair_queue.Released(token_owed=False, budget_waiters=True)
    try:
        if released.token_owed:
            enqueue.publish_tokens(1)
    except Exception:
        log.warning("job %s: a parked token is left to the sweeper", turn.job_id)
    if wake_waiters and released.budget_waiters:
        budget_waiters.wake(uuid.UUID(turn.tenant))
