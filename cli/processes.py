"""Running aijobs' processes: migrate, the API, a worker (supervised)."""

from __future__ import annotations

import argparse
import os
import sys

from aijobs.settings import get_settings
from cli import supervise

WORKER_DB_POOL = 4
# Connections `aijobs api` keeps: enough for 20 requests at once in its 40 threads
# (anyio's default pool, where FastAPI runs sync routes); more open as overflow.
API_DB_POOL = 20


def cmd_migrate(_: argparse.Namespace) -> int:
    from aijobs.migrate import upgrade

    upgrade()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    if "AIJOBS_DB_POOL_SIZE" not in os.environ:
        # With the default pool of 10, 16 concurrent submits opened and closed a
        # connection (a Postgres backend) every ~7 requests (docs/scaling.md).
        os.environ["AIJOBS_DB_POOL_SIZE"] = str(API_DB_POOL)
        get_settings.cache_clear()
    uvicorn.run(
        "api.app:app",
        host=args.host,
        port=args.port,
        log_config=None,  # our handlers: JSON lines with the request id
        access_log=False,
        # Longer than clients' and load balancers' idle timeouts (httpx: 5 s, like
        # uvicorn's default): otherwise the server may close a kept-alive connection
        # just as a client sends on it, and that request fails with a reset.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    concurrency = (
        get_settings().worker_concurrency if args.concurrency is None else args.concurrency
    )
    if concurrency < 1 or args.processes < 1:
        raise RuntimeError("--concurrency and --processes must be at least 1")
    if os.environ.get(supervise.CHILD_ENV) != "1":
        me = [sys.executable, "-m", "cli", "worker", "--concurrency", str(concurrency)]
        return supervise.supervise(me, copies=args.processes)
    # The call loop holds `concurrency` calls in flight; the settings it reads.
    os.environ["AIJOBS_WORKER_CONCURRENCY"] = str(concurrency)
    if "AIJOBS_DB_POOL_SIZE" not in os.environ:
        # The claim and settle run on the loop's database threads, one per pooled
        # connection. A handful serve a thousand calls (each holds one ~1 ms a statement);
        # more only made Postgres contend on a 2-core host (docs/scaling.md). Webhook
        # threads and the maintenance loop may open the overflow.
        os.environ["AIJOBS_DB_POOL_SIZE"] = str(WORKER_DB_POOL)
        os.environ.setdefault("AIJOBS_DB_MAX_OVERFLOW", "16")
    get_settings.cache_clear()

    from aijobs.broker import QUEUE, WEBHOOK_QUEUE
    from worker.celery_app import app

    # The solo pool: Celery's consumer runs each task inline, and a task only admits
    # its attempt to the call loop (blocking while the loop is full). The calls wait
    # on the loop, not in a thread or a process each.
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            f"--queues={QUEUE},{WEBHOOK_QUEUE}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0
