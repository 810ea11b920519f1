"""Send one attempt of a webhook delivery: take a slot of its tenant's cap, claim it,
sign and POST the event, settle.

A delivery whose tenant has AIJOBS_WEBHOOK_TENANT_INFLIGHT deliveries in flight
already is deferred (pending, due a little later) instead of holding a thread. Only
2xx succeeds. A 410 or a target the SSRF guard refuses ends the delivery as
failed; any other answer or error is retried on AIJOBS_WEBHOOK_RETRY_DELAYS, with a
due time in Postgres (no delayed broker message), never sooner than Retry-After on a
429 or 503.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from datetime import UTC, datetime

from aijobs.batches.view import view as batch_view
from aijobs.db import autocommit
from aijobs.jobs.view import view
from aijobs.settings import get_settings
from aijobs.webhooks import deliveries, signing
from worker import webhook_caps, webhook_http
from worker.retry_policy import webhook_retry_delay

log = logging.getLogger("aijobs.webhooks")

HONOURS_RETRY_AFTER = frozenset({429, 503})
# A delivery that cannot be sent now is due again after about this long (the sweeper
# publishes it on its next pass after that).
DEFER_S = 0.5


def defer(delivery_id: int) -> str:
    """Leave the delivery in Postgres, due a little later (jittered, so deferred ones
    do not all come back at once)."""
    with autocommit() as conn:
        deliveries.defer(conn, delivery_id, DEFER_S * random.uniform(0.8, 1.6))
    return "deferred"


def _body(delivery: deliveries.ClaimedDelivery) -> str:
    """The event, with the job as GET /v1/jobs/{id} shows it (or the batch as GET
    /v1/batches/{id} does) when first sent."""
    with autocommit() as conn:
        if delivery.job_id is not None:
            data = view(deliveries.job_row(conn, delivery.job_id))
        else:
            data = batch_view(deliveries.batch_row(conn, delivery.subject_id))
        event = {
            "type": delivery.event,
            "timestamp": delivery.created_at.astimezone(UTC).isoformat(),
            "data": data,
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
    """Returns what happened, for logs and tests: skipped | deferred | delivered |
    failed | retrying."""
    settings = get_settings()
    cap = settings.webhook_tenant_inflight
    if not cap:
        return _attempt(delivery_id, owner)
    with autocommit() as conn:
        tenant_id = deliveries.tenant_if_due(conn, delivery_id)
    if tenant_id is None:
        return "skipped"
    # Held at most as long as an attempt can last (its deadline, then claim and settle).
    slot = webhook_caps.acquire(tenant_id, cap, settings.webhook_timeout_s + settings.lease_s)
    if slot is None:
        return defer(delivery_id)
    try:
        return _attempt(delivery_id, owner)
    finally:
        with contextlib.suppress(Exception):  # the slot expires by itself
            webhook_caps.release(tenant_id, slot)


def _attempt(delivery_id: int, owner: str) -> str:
    settings = get_settings()
    with autocommit() as conn:
        delivery = deliveries.claim(conn, delivery_id, owner, settings.lease_s)
    if delivery is None:
        return "skipped"
    body = delivery.body if delivery.body is not None else _body(delivery)
    msg_id = signing.message_id(delivery.subject_id, delivery.seq)
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
