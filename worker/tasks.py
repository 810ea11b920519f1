"""Celery tasks: thin, typed, idempotent. They hand one attempt to the worker's call
loop (worker/call_loop.py): run_next is a token (the fair queue picks the job when a
slot is free), deliver_webhook takes the delivery's id."""

from __future__ import annotations

from aijobs.broker import DELIVER_WEBHOOK_TASK, RUN_NEXT_TASK
from worker.call_loop import call_loop
from worker.celery_app import app
from worker.identity import worker_id


@app.task(name=RUN_NEXT_TASK)  # type: ignore[untyped-decorator]
def run_next() -> None:
    call_loop.run_next(worker_id())


@app.task(name=DELIVER_WEBHOOK_TASK)  # type: ignore[untyped-decorator]
def deliver_webhook(delivery_id: int) -> None:
    call_loop.deliver_webhook(int(delivery_id), worker_id())
