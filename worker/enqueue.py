"""Publishing from the worker: queued jobs into the fair queue, and run_next tokens.

The API pushes a job and its token in one script (api/publisher.py); here the job ids
go first and the tokens after, through Celery: a token lost between the two is owed,
and the sweeper's reconcile publishes it (aijobs/scheduling/fair_queue.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from aijobs.broker import QUEUE, RUN_NEXT_TASK
from aijobs.db import autocommit
from aijobs.scheduling import fair_queue


def publish_tokens(count: int) -> None:
    from worker.celery_app import app  # the worker's app (it imports this module)

    for _ in range(count):
        app.send_task(RUN_NEXT_TASK, queue=QUEUE, retry=False)


def push_entries(entries: Sequence[fair_queue.Entry]) -> None:
    fair_queue.push(fair_queue.client(), entries)
    publish_tokens(len(entries))


def publish_jobs(job_ids: Sequence[uuid.UUID]) -> None:
    """Queued jobs (their tenant and priority read from Postgres), a token each."""
    if not job_ids:
        return
    with autocommit() as conn:
        entries = fair_queue.entries_for(conn, job_ids)
    push_entries(entries)
