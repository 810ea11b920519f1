"""Broker conventions both edges share: task names, the queue, the Celery settings.

Plain data, so the domain stays free of Celery; api/ and worker/ build their
Celery apps from it.
"""

from __future__ import annotations

from typing import Any

from aijobs.settings import Settings

# A token: "run the next job" (which one, the fair queue decides: aijobs/scheduling).
RUN_NEXT_TASK = "aijobs.run_next"
QUEUE = "aijobs"
# Webhook deliveries have their own queue: a slow receiver never delays a job.
DELIVER_WEBHOOK_TASK = "aijobs.deliver_webhook"
WEBHOOK_QUEUE = "aijobs.webhooks"


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.effective_broker_url,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        # Recovery does not rest on the broker: Postgres leases and the sweeper
        # re-publish lost work, so a message is acknowledged when its task starts
        # (no visibility_timeout redeliveries of long calls).
        "task_acks_late": False,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_pool_limit": 50,
        "broker_transport_options": {
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            "ack_emulation": False,
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }
