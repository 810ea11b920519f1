"""Celery tasks: thin, typed, idempotent. They take an id and hand over to the runner."""

from __future__ import annotations

import uuid

from aijobs.broker import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from worker.celery_app import app
from worker.identity import worker_id
from worker.runner import run_job as run_job_once
from worker.webhook_runner import deliver as deliver_once


@app.task(name=RUN_JOB_TASK)  # type: ignore[untyped-decorator]
def run_job(job_id: str) -> str:
    return run_job_once(uuid.UUID(job_id), worker_id())


@app.task(name=DELIVER_WEBHOOK_TASK)  # type: ignore[untyped-decorator]
def deliver_webhook(delivery_id: int) -> str:
    return deliver_once(int(delivery_id), worker_id())
