"""Celery tasks: thin, typed, idempotent. They take an id and hand over to the runner."""

from __future__ import annotations

import uuid

from aijobs.broker import RUN_JOB_TASK
from worker.celery_app import app
from worker.identity import worker_id
from worker.runner import run_job as run_job_once


@app.task(name=RUN_JOB_TASK)  # type: ignore[untyped-decorator]
def run_job(job_id: str) -> str:
    return run_job_once(uuid.UUID(job_id), worker_id())
