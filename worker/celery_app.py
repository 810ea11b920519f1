"""The worker's Celery app: configuration, and the call loop and maintenance loop
started and stopped with it.

The configuration is read from settings when Celery first needs it, not at import:
`aijobs worker` sets what it decides (concurrency, pool size) before that."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown, worker_shutting_down

from aijobs.broker import DELIVER_WEBHOOK_TASK, QUEUE, RUN_NEXT_TASK, WEBHOOK_QUEUE, celery_config
from aijobs.settings import get_settings
from worker import status_server
from worker.call_loop import call_loop
from worker.maintenance import maintenance
from worker.provider_batches.dispatcher import dispatcher

app = Celery("aijobs")
app.add_defaults(lambda: {**celery_config(get_settings()), "imports": ("worker.tasks",)})

# A call never outlives its timeout_s (at most 600 s), nor the settle after it.
DRAIN_S = 630.0


@worker_init.connect  # type: ignore[untyped-decorator]
def _start_call_loop(**_: Any) -> None:
    settings = get_settings()
    call_loop.start(
        slots=settings.worker_concurrency,
        db_threads=settings.db_pool_size,
        webhook_threads=settings.webhook_threads,
        republish=_republish,
    )


def _republish(kind: str, key: Any) -> None:
    if kind == "job":  # a token: the job was not picked yet
        app.send_task(RUN_NEXT_TASK, queue=QUEUE, retry=False)
    else:
        app.send_task(DELIVER_WEBHOOK_TASK, args=[key], queue=WEBHOOK_QUEUE, retry=False)


@worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _stop_claiming(**_: Any) -> None:
    """SIGTERM: nothing more is claimed; what was handed over goes back to the queue."""
    call_loop.stop_claiming()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_maintenance(**_: Any) -> None:
    # Not stopped at shutdown: leases of calls still finishing must keep being renewed.
    maintenance.start(app)
    dispatcher.start()  # the batch tier's provider batches
    port = get_settings().worker_metrics_port
    if port:
        from aijobs.metrics import QuotaCollector, register_collectors

        register_collectors(QuotaCollector())
        status_server.start(port)


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _drain_call_loop(**_: Any) -> None:
    """Warm shutdown: Celery has stopped taking messages; the calls in flight finish."""
    call_loop.drain(DRAIN_S)
