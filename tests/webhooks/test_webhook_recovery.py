"""Webhook deliveries survive what the broker does: a duplicate message sends once, and
deliveries due when the broker's Redis is flushed are still sent."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import psycopg
import redis
from celery import Celery

from aijobs.broker import DELIVER_WEBHOOK_TASK, WEBHOOK_QUEUE, celery_config
from aijobs.settings import get_settings
from tests.conftest import Client
from tests.helpers import barrier, chat, job_status, unique, wait_until
from tests.stack import ADMIN_TOKEN, Stack
from tests.webhook_receiver import Receiver, Step


def _publisher() -> Celery:
    app = Celery("test-publisher")
    app.config_from_object(celery_config(get_settings()))
    return app


def _webhook(client: Client, job_id: str) -> dict[str, Any]:
    webhook: dict[str, Any] = job_status(client, job_id)["webhook"]
    return webhook


def _wait_delivered(client: Client, job_id: str, attempts: int) -> None:
    wait_until(
        lambda: _webhook(client, job_id)["status"] == "delivered",
        what=lambda: f"the webhook delivered: {_webhook(client, job_id)}",
        interval_s=0.1,
    )
    assert _webhook(client, job_id)["attempts"] == attempts


def test_a_duplicate_deliver_message_delivers_once(
    live: Stack, client: Client, receiver: Receiver, db: psycopg.Connection[Any]
) -> None:
    # The first attempt gets a 503 that parks the delivery for a minute; the second
    # answer takes a second, so the two messages below are handled while it is sent.
    url = receiver.path(Step(503, {"Retry-After": "60"}), Step(200, sleep_s=1), Step(200))
    body = chat(unique("hook"), model="sim/echo", webhook_url=url)
    job = client.submit(body).json()

    def parked() -> int | None:
        row = db.execute(
            "SELECT id FROM webhook_deliveries WHERE job_id = %s AND status = 'pending'"
            " AND attempts = 1 AND next_attempt_at > now() + interval '30 seconds'",
            (job["id"],),
        ).fetchone()
        return int(row[0]) if row else None

    delivery_id = wait_until(parked, what="the delivery waiting for its retry")
    # Due now, and marked as published (so the sweeper leaves it be): our two messages
    # are the only ones, and the same delivery id is in both.
    db.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now(), enqueued_at = now() WHERE id = %s",
        (delivery_id,),
    )
    publisher = _publisher()
    for _ in range(2):
        publisher.send_task(DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=WEBHOOK_QUEUE)

    _wait_delivered(client, job["id"], attempts=2)
    barrier(live, client, receiver)  # both messages have been handled to their end
    requests = receiver.requests(url)
    assert len(requests) == 2, requests  # the 503, then one POST for both messages
    first, second = requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    attempts = db.execute(
        "SELECT attempt_no, status_code FROM webhook_attempts WHERE delivery_id = %s"
        " ORDER BY attempt_no",
        (delivery_id,),
    ).fetchall()
    assert attempts == [(1, 503), (2, 200)]


def test_webhooks_due_when_the_broker_is_flushed_are_delivered(
    live: Stack, client: Client, receiver: Receiver
) -> None:
    """Two deliveries due with no worker running: a redelivery whose message is in the
    broker, and a cancelled job's first delivery, not yet published. FLUSHDB drops the
    messages (and the queues); the sweeper sends both when a worker starts."""
    redelivered_url, cancelled_url = receiver.path(), receiver.path()
    redelivered = client.submit(
        chat(unique("hook"), model="sim/echo", webhook_url=redelivered_url)
    ).json()
    _wait_delivered(client, redelivered["id"], attempts=1)

    live.kill_workers(signal.SIGTERM)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    again = httpx.post(
        f"{live.base_url}/admin/jobs/{redelivered['id']}/webhook/redeliver", headers=admin
    )
    assert again.status_code == 202, again.text  # published: its message is in the broker
    cancelled = client.submit(
        chat(unique("never run"), model="sim/echo", webhook_url=cancelled_url)
    ).json()
    assert client.http.post(f"/v1/jobs/{cancelled['id']}/cancel").json()["status"] == "cancelled"
    broker = redis.Redis.from_url(get_settings().effective_broker_url)
    assert broker.llen(WEBHOOK_QUEUE) >= 1  # the redelivery's message
    broker.flushdb()
    assert broker.dbsize() == 0

    live.start_worker()
    first, second = receiver.wait_for(redelivered_url, 2, timeout_s=60)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    (event,) = receiver.wait_for(cancelled_url, 1, timeout_s=60)
    assert b'"type":"job.cancelled"' in event.body
    _wait_delivered(client, redelivered["id"], attempts=2)
    _wait_delivered(client, cancelled["id"], attempts=1)
