"""The worker's Celery app: configuration, and the maintenance loop started with it."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_ready

from aijobs.broker import celery_config
from aijobs.settings import get_settings

app = Celery("aijobs")
app.config_from_object(celery_config(get_settings()))
app.conf.imports = ("worker.tasks",)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_maintenance(**_: Any) -> None:
    from worker import status_server
    from worker.maintenance import maintenance

    # Not stopped at shutdown: leases of calls still finishing must keep being renewed.
    maintenance.start()
    port = get_settings().worker_metrics_port
    if port:
        status_server.start(port)
