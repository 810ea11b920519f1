"""Send one attempt of a webhook delivery: claim it, sign and POST the event, settle.

Only 2xx succeeds. A 410 or a target the SSRF guard refuses ends the delivery as
failed; any other answer or error is retried on AIJOBS_WEBHOOK_RETRY_DELAYS, with a
due time in Postgres (no delayed broker message), never sooner than Retry-After on a
429 or 503.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from aijobs.db import autocommit
from aijobs.jobs.view import view
from aijobs.settings import get_settings
from aijobs.webhooks import deliveries, signing
from worker import webhook_http
from worker.retry_policy import webhook_retry_delay

log = logging.getLogger("aijobs.webhooks")

HONOURS_RETRY_AFTER = frozenset({429, 503})


def _body(delivery: deliveries.ClaimedDelivery) -> str:
    """The event, with the job as GET /v1/jobs/{id} shows it when first sent."""
    with autocommit() as conn:
        job = view(deliveries.job_row(conn, delivery.job_id))
        event = {
            "type": delivery.event,
            "timestamp": delivery.created_at.astimezone(UTC).isoformat(),
            "data": job,
        }
        return deliveries.fix_body(conn, delivery.id, json.dumps(event, separators=(",", ":")))


def _next(delivery: deliveries.ClaimedDelivery, answer: webhook_http.Answer) -> tuple[str, float]:
    """What comes after this answer: (delivered | failed | pending, delay)."""
    if answer.ok:
        return "delivered", 0.0
    if answer.refused or answer.status_code == 410:
        return "failed", 0.0
    retry_after = answer.retry_after_s if answer.status_code in HONOURS_RETRY_AFTER else None
    delay = webhook_retry_delay(delivery.tries, get_settings().webhook_retry_schedule, retry_after)
    return ("failed", 0.0) if delay is None else ("pending", delay)


def deliver(delivery_id: int, owner: str) -> str:
    """Returns what happened, for logs and tests: skipped | delivered | failed | retrying."""
    settings = get_settings()
    with autocommit() as conn:
        delivery = deliveries.claim(conn, delivery_id, owner, settings.lease_s)
    if delivery is None:
        return "skipped"
    body = delivery.body if delivery.body is not None else _body(delivery)
    msg_id = signing.message_id(delivery.job_id, delivery.seq)
    started_at = datetime.now(UTC)
    headers = signing.headers(delivery.secrets, msg_id, int(time.time()), body)
    answer = webhook_http.post(
        delivery.url,
        body.encode(),
        headers,
        timeout_s=settings.webhook_timeout_s,
        allow_raw=settings.webhook_allow_hosts,
    )
    status, delay = _next(delivery, answer)
    record = deliveries.AttemptRecord(
        webhook_id=msg_id,
        started_at=started_at,
        latency_ms=answer.latency_ms,
        status_code=answer.status_code,
        error=answer.error,
        response_body=answer.response_body,
    )
    with autocommit() as conn:
        if not deliveries.settle(conn, delivery, owner, record, status=status, delay_s=delay):
            log.warning("webhook %s: lease lost during attempt %d", msg_id, delivery.attempt_no)
            return "skipped"
    outcome = answer.status_code if answer.status_code is not None else answer.error
    log.info("webhook %s attempt %d: %s -> %s", msg_id, delivery.attempt_no, outcome, status)
    return "retrying" if status == "pending" else status
