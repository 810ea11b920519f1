"""Celery tasks: thin, typed, idempotent. They take an id and hand one attempt to the
worker's call loop (worker/call_loop.py)."""

from __future__ import annotations

import uuid

from aijobs.broker import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from worker.call_loop import call_loop
from worker.celery_app import app
from worker.identity import worker_id


@app.task(name=RUN_JOB_TASK)  # type: ignore[untyped-decorator]
def run_job(job_id: str) -> None:
    call_loop.run_job(uuid.UUID(job_id), worker_id())


@app.task(name=DELIVER_WEBHOOK_TASK)  # type: ignore[untyped-decorator]
def deliver_webhook(delivery_id: int) -> None:
    call_loop.deliver_webhook(int(delivery_id), worker_id())
