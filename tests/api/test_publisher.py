"""The API publishes Celery's own message: the one send_task makes, pushed in one round
trip (api/publisher.py). Compared field by field with send_task's, ids aside."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import redis

from aijobs.broker import DELIVER_WEBHOOK_TASK, RUN_NEXT_TASK
from aijobs.scheduling import fair_queue
from aijobs.settings import get_settings
from api import publisher
from tests.conftest import Services


def _comparable(raw: bytes | str) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for per_message in ("id", "root_id"):
        message["headers"].pop(per_message)
    for per_message in ("correlation_id", "delivery_tag"):
        message["properties"].pop(per_message)
    return message


def test_a_published_message_is_the_one_send_task_makes(services: Services) -> None:
    get_settings.cache_clear()
    publisher._client.cache_clear()
    publisher._publisher.cache_clear()
    # A queue of its own: no worker of another test consumes it.
    queue = f"test-publisher-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(services.redis_url)
    try:
        for task, args in ((RUN_NEXT_TASK, []), (DELIVER_WEBHOOK_TASK, [7])):
            publisher._client().send_task(task, args=args, queue=queue, retry=False)
            publisher._publisher().send(task, args, queue)
            assert client.llen(queue) == 2
            ours, celerys = client.lrange(queue, 0, 1)  # LPUSH: the last one first
            assert json.loads(ours)["headers"]["id"] != json.loads(celerys)["headers"]["id"]
            assert _comparable(ours) == _comparable(celerys)
            assert _comparable(ours)["body"][0] == args
            client.delete(queue)
    finally:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        publisher._client.cache_clear()
        publisher._publisher.cache_clear()


def test_a_publish_that_fails_is_reported_not_raised(services: Services, monkeypatch: Any) -> None:
    """The job is safe in Postgres; the sweeper publishes it. (redis-py's own retries
    take about 6 s here, as they did through send_task.)"""
    monkeypatch.setenv("AIJOBS_BROKER_URL", "redis://127.0.0.1:9/0")  # nothing listens
    get_settings.cache_clear()
    publisher._client.cache_clear()
    publisher._publisher.cache_clear()
    try:
        entry = fair_queue.Entry(uuid.uuid4(), uuid.uuid4())
        assert publisher.publish_entry(entry) is False
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        publisher._client.cache_clear()
        publisher._publisher.cache_clear()
