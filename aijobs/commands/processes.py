"""Running aijobs: migrate, the API, a worker, and all of it at once (`dev`)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from aijobs.commands import supervise
from aijobs.settings import get_settings

WORKER_DB_POOL = 4


def cmd_migrate(_: argparse.Namespace) -> int:
    from aijobs.migrate import upgrade

    upgrade()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

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
        me = [sys.executable, "-m", "aijobs.cli", "worker", "--concurrency", str(concurrency)]
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


def wait_ready(url: str, child: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until `url` answers 200; fails if `child` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"process exited during start-up: {child.args!r}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def cmd_dev(args: argparse.Namespace) -> int:
    """migrate + api + worker in one command, on the embedded servers unless the URLs are set."""
    from aijobs import embedded

    settings = get_settings()
    servers = None
    if not settings.database_url or not settings.redis_url:
        servers = embedded.start(settings.data_dir)
        if not settings.database_url:
            os.environ["AIJOBS_DATABASE_URL"] = servers.database_url
        if not settings.redis_url:
            os.environ["AIJOBS_REDIS_URL"] = servers.redis_url
        get_settings.cache_clear()
    settings = get_settings()
    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        cmd_migrate(args)
        from aijobs.db import session_scope
        from aijobs.tenants import create_key

        with session_scope() as session:
            demo = create_key(session, "demo")
        me = [sys.executable, "-m", "aijobs.cli"]
        os.environ.setdefault("AIJOBS_LOG_FORMAT", "text")
        api = subprocess.Popen([*me, "api", "--host", args.host, "--port", str(args.port)])
        children.append(api)
        children.append(subprocess.Popen([*me, "worker", "--concurrency", str(args.concurrency)]))
        base = f"http://{args.host}:{args.port}"
        wait_ready(base + "/readyz", api)
        print(
            "\n".join(
                [
                    "",
                    f"aijobs dev is up: API {base} (docs {base}/docs), 1 worker.",
                    f"  database: {settings.database_url}",
                    f"  redis:    {settings.redis_url}",
                    f"  demo API key (tenant demo, shown once): {demo.api_key}",
                    f"  demo webhook secret: {demo.webhook_secret}",
                    "  try the simulator (sim/echo, no provider key needed):",
                    f"    curl -s -X POST {base}/v1/jobs -H 'Authorization: Bearer {demo.api_key}'"
                    " -H 'Content-Type: application/json'"
                    ' -d \'{"model":"sim/echo","messages":[{"role":"user","content":"hi"}]}\'',
                    "",
                ]
            ),
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        if servers is not None:
            servers.stop()
