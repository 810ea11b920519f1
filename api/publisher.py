"""Publish run_job (and deliver_webhook) messages after the change has committed.

A publish that fails (broker down) is logged, not raised: the job is safe in
Postgres and the workers' sweeper publishes it.
"""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache

from celery import Celery

from aijobs.broker import (
    DELIVER_WEBHOOK_TASK,
    QUEUE,
    RUN_JOB_TASK,
    WEBHOOK_QUEUE,
    celery_config,
)
from aijobs.settings import get_settings

log = logging.getLogger("aijobs.api")


@lru_cache
def _client() -> Celery:
    app = Celery("aijobs-api")
    app.config_from_object(celery_config(get_settings()))
    return app


def publish_run(job_id: uuid.UUID) -> bool:
    try:
        _client().send_task(RUN_JOB_TASK, args=[str(job_id)], queue=QUEUE, retry=False)
    except Exception as exc:
        log.warning("publish of job %s failed (the sweeper will publish it): %s", job_id, exc)
        return False
    return True


def publish_delivery(delivery_id: int) -> bool:
    try:
        _client().send_task(
            DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=WEBHOOK_QUEUE, retry=False
        )
    except Exception as exc:
        log.warning(
            "publish of delivery %s failed (the sweeper will publish it): %s", delivery_id, exc
        )
        return False
    return True
