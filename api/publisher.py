"""Publish queued jobs (and deliver_webhook messages) after the change has committed.

A job is pushed into its tenant's list in the fair queue together with its Celery
message, a run_next token, in one Redis script (aijobs/scheduling/fair_queue.py): the
worker that takes the token asks the fair queue which job to start. A publish that
fails (broker down) is logged, not raised: the job is safe in Postgres and the
workers' sweeper publishes it.

The message is Celery's own: Celery builds the task message (protocol 2, json) and
kombu's Redis channel wraps it in its envelope, exactly as `send_task` would; only the
last step differs: one long-lived Redis client pushes it on the queue's list. Through
`send_task` a publish cost about 0.5 ms of CPU on the submit's hot path (options and
routing re-derived per call, and a new Redis client that kombu builds per publish),
this way about 0.2 ms (docs/scaling.md). The queues are plain lists on the default
priority: the workers declare and consume them as usual.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import redis
from celery import Celery
from kombu import serialization
from kombu.utils import json as kombu_json

from aijobs.broker import (
    DELIVER_WEBHOOK_TASK,
    QUEUE,
    RUN_NEXT_TASK,
    WEBHOOK_QUEUE,
    celery_config,
)
from aijobs.db import autocommit
from aijobs.scheduling import fair_queue
from aijobs.settings import get_settings

log = logging.getLogger("aijobs.api")
# kombu's own functions (untyped there): the body's serializer, the envelope's JSON.
serialize: Callable[..., tuple[str, str, str]] = serialization.dumps
envelope_json: Callable[[Any], str] = kombu_json.dumps
PERSISTENT = 2  # kombu's delivery_mode for a message that outlives a broker restart


@lru_cache
def _client() -> Celery:
    app = Celery("aijobs-api")
    app.config_from_object(celery_config(get_settings()))
    return app


class _Publisher:
    """Celery's message for a task, pushed on its queue in one Redis round trip."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.connection = app.connection_for_write()
        self.channel: Any = None
        options = app.conf.broker_transport_options
        self.redis = redis.Redis.from_url(
            app.conf.broker_url,
            socket_timeout=options.get("socket_timeout"),
            socket_connect_timeout=options.get("socket_connect_timeout"),
        )
        self._lock = threading.Lock()

    def _channel(self) -> Any:
        # kombu's Redis channel: what wraps a message for this transport. Its methods
        # used here touch no connection and no shared state.
        if self.channel is None:
            with self._lock:
                if self.channel is None:
                    self.channel = self.connection.default_channel
        return self.channel

    def message(self, task: str, args: list[Any], queue: str) -> tuple[str, bytes]:
        """(the Redis list, the message) as send_task(task, args, queue=queue) makes it
        (tests/api/test_publisher.py compares the two)."""
        channel = self._channel()
        task_id = str(uuid.uuid4())
        task_message = self.app.amqp.as_task_v2(
            task_id, task, args=args, reply_to=self.app.thread_oid, ignore_result=None
        )
        content_type, content_encoding, body = serialize(
            task_message.body, serializer=self.app.conf.task_serializer
        )
        # A queue named by a string: Celery publishes on the default exchange, routed by
        # the queue's name, persistent, at the default priority.
        properties = {**task_message.properties, "delivery_mode": PERSISTENT}
        message = channel.prepare_message(
            body, None, content_type, content_encoding, task_message.headers, properties
        )
        channel._inplace_augment_message(message, "", queue)
        key = channel._q_for_pri(queue, channel._get_message_priority(message, reverse=False))
        return key, envelope_json(message).encode()

    def send(self, task: str, args: list[Any], queue: str) -> None:
        key, message = self.message(task, args, queue)
        self.redis.lpush(key, message)

    def push_jobs(self, entries: list[fair_queue.Entry]) -> None:
        """The jobs into the fair queue, a token each, in one script per tenant."""
        tokens = [self.message(RUN_NEXT_TASK, [], QUEUE) for _ in entries]
        if tokens:
            fair_queue.push(
                self.redis, entries, token_key=tokens[0][0], tokens=[t[1] for t in tokens]
            )


@lru_cache
def _publisher() -> _Publisher:
    return _Publisher(_client())


def publish_entry(entry: fair_queue.Entry) -> bool:
    """A job just submitted: its tenant and priority known, no lookup."""
    try:
        _publisher().push_jobs([entry])
    except Exception as exc:
        log.warning("publish of job %s failed (the sweeper will publish it): %s", entry.job_id, exc)
        return False
    return True


def publish_runs(job_ids: list[uuid.UUID]) -> bool:
    """Jobs queued by some other path (a re-run, a batch, a follower that leads now):
    their tenants and priorities read from Postgres first."""
    try:
        with autocommit() as conn:
            entries = fair_queue.entries_for(conn, job_ids)
        _publisher().push_jobs(entries)
    except Exception as exc:
        log.warning(
            "publish of %d job(s) failed (the sweeper will publish them): %s", len(job_ids), exc
        )
        return False
    return True


def publish_run(job_id: uuid.UUID) -> bool:
    return publish_runs([job_id])


def publish_delivery(delivery_id: int) -> bool:
    try:
        _publisher().send(DELIVER_WEBHOOK_TASK, [delivery_id], WEBHOOK_QUEUE)
    except Exception as exc:
        log.warning(
            "publish of delivery %s failed (the sweeper will publish it): %s", delivery_id, exc
        )
        return False
    return True
