"""Bare baseline worker: a plain Celery app whose task does one UPDATE of one row."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from celery import Celery
from sqlalchemy import create_engine, text

from bench.common import WORKER_QUEUE, database_url, redis_url, sqlalchemy_url

TASK = "bench.touch"

engine = create_engine(sqlalchemy_url(database_url()), pool_size=10, max_overflow=30)

app = Celery("bench-baseline-worker")
app.conf.update(
    broker_url=redis_url(),
    task_default_queue=WORKER_QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=False,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)

UPDATE = text(
    "UPDATE bench_rows SET done = true, started_at = :started, updated_at = now() WHERE id = :id"
)


SLEEP_S = float(os.environ.get("BENCH_SLEEP_S", "0"))


@app.task(name=TASK)  # type: ignore[untyped-decorator]
def touch(row_id: str) -> None:
    started = datetime.now(UTC)
    if SLEEP_S:
        time.sleep(SLEEP_S)  # the I/O-bound variant: a provider call's wait
    with engine.begin() as conn:
        conn.execute(UPDATE, {"id": row_id, "started": started})
