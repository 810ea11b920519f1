"""The `aijobs` command: the process entry point, and the one place that wires the
edges together (it imports api/ and worker/ lazily, inside the commands that run them)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from aijobs.errors import AppError
from aijobs.settings import get_settings


def _configure_logging(command: str) -> None:
    from aijobs import logs, sentry

    settings = get_settings()
    logs.configure(settings.log_format)
    if command in ("api", "worker"):
        sentry.init(settings, component=command)


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
        timeout_graceful_shutdown=30,
    )
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


def cmd_usage(args: argparse.Namespace) -> int:
    """Spend by model and by day from the ledger, and the bill at `--scale` times the
    traffic, before and after the cache's savings."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from aijobs import usage
    from aijobs.db import session_scope
    from aijobs.models import Tenant

    end = datetime.now(UTC).date() + timedelta(days=1)
    start = end - timedelta(days=args.days)
    with session_scope() as session:
        tenant_id = None
        if args.tenant:
            tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == args.tenant))
            if tenant_id is None:
                raise RuntimeError(f"no tenant {args.tenant!r}")
        conn = session.connection()
        reports = {
            group: usage.report(conn, tenant_id, start=start, end=end, group_by=group)
            for group in ("model", "day")
        }
    who = args.tenant or "all tenants"
    print(f"aijobs usage: {who}, {start} to {end - timedelta(days=1)} (UTC)")
    for group, result in reports.items():
        print(
            f"\n{'by ' + group:<30} {'calls':>8} {'tokens in':>12} {'tokens out':>12}"
            f" {'spend USD':>14} {'hits':>6} {'saved USD':>12}"
        )
        for key, line in [*result.lines.items(), ("total", result.total)]:
            print(
                f"{key:<30} {line.calls:>8} {line.input_tokens:>12} {line.output_tokens:>12}"
                f" {line.cost_usd:>14.6f} {line.cache_hits:>6} {line.saved_usd:>12.6f}"
            )
    total = reports["model"].total
    scale = Decimal(str(args.scale))
    without_cache = (total.cost_usd + total.saved_usd) * scale
    with_cache = total.cost_usd * scale
    print(
        f"\nat {args.scale:g}x this traffic: {without_cache:.2f} USD without the cache,"
        f" {with_cache:.2f} USD with it (saves {without_cache - with_cache:.2f} USD)"
    )
    return 0


def _filter(args: argparse.Namespace) -> Any:
    from datetime import datetime

    from aijobs.triage import JobFilter

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return JobFilter(
        status=args.status,
        error_code=args.error_code,
        tenant=args.tenant,
        model=args.model,
        since=when(args.since),
        until=when(args.until),
    )


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from aijobs import triage
    from aijobs.db import session_scope

    with session_scope() as session:
        rows, _, counts = triage.find(session, _filter(args), limit=args.limit, cursor=None)
    print(f"{'id':<36}  {'tenant':<16} {'status':<9} {'error':<22} {'attempts':>8}  created")
    for row, tenant in rows:
        print(
            f"{row['id']!s:<36}  {tenant[:16]:<16} {row['status']:<9}"
            f" {row['error_code'] or '-':<22} {row['attempts']:>8}"
            f"  {row['created_at']:%Y-%m-%d %H:%M:%S}"
        )
    print("by error code: " + ", ".join(f"{code} {n}" for code, n in sorted(counts.items())))
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    """Re-run one job or every finished job a filter matches, with a progress bar."""
    import getpass
    import uuid

    from aijobs import audit, triage
    from aijobs.db import session_scope

    with session_scope() as session:
        if args.job:
            ids = [triage.get(session, args.job).id]
        else:
            ids = triage.select_for_rerun(session, _filter(args))
    if args.dry_run:
        print(json.dumps({"count": len(ids), "ids": [str(i) for i in ids], "dry_run": True}))
        return 0
    from api.publisher import publish_run

    outcome = triage.Rerun()
    batch = 100
    for start in range(0, len(ids), batch):
        with session_scope() as session:
            done = len(outcome.requeued)
            for job_id in ids[start : start + batch]:
                triage.rerun_one(session, uuid.UUID(str(job_id)), outcome)
            audit.record(
                session,
                "jobs.rerun",
                f"cli:{getpass.getuser()}",
                ids=[str(i) for i in ids[start : start + batch]],
            )
        for job_id in outcome.requeued[done:]:
            publish_run(job_id)
        shown = min(start + batch, len(ids))
        bar = "#" * (30 * shown // max(len(ids), 1))
        print(f"\r[{bar:<30}] {shown}/{len(ids)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(
        json.dumps(
            {
                "count": outcome.count,
                "requeued": len(outcome.requeued),
                "answered_at_once": len(outcome.answered),
                "skipped": outcome.skipped,
                "ids": [str(i) for i in [*outcome.requeued, *outcome.answered]],
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
        os.environ.setdefault("AIJOBS_LOG_FORMAT", "text")
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

    def add_filter(command: argparse.ArgumentParser, status: str | None) -> None:
        command.add_argument("--status", default=status)
        command.add_argument("--error-code", default=None)
        command.add_argument("--tenant", default=None, help="name or id")
        command.add_argument("--model", default=None)
        command.add_argument("--since", default=None, help="ISO time")
        command.add_argument("--until", default=None, help="ISO time")

    jobs = sub.add_parser("jobs", help="jobs across tenants").add_subparsers(
        dest="jobs_command", required=True
    )
    listing = jobs.add_parser("list", help="newest first, with counts by error code")
    add_filter(listing, None)
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=cmd_jobs_list)

    rerun = sub.add_parser("rerun", help="re-run one job, or every finished job a filter matches")
    rerun.add_argument("--job", default=None)
    add_filter(rerun, "failed")
    rerun.add_argument("--dry-run", action="store_true")
    rerun.set_defaults(func=cmd_rerun)

    report = sub.add_parser("usage", help="spend by model and day, and the bill at scale")
    report.add_argument("--tenant", default=None)
    report.add_argument("--days", type=int, default=30)
    report.add_argument("--scale", type=float, default=1.0)
    report.set_defaults(func=cmd_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.command)
    try:
        return int(args.func(args))
    except (RuntimeError, AppError) as exc:
        print(f"aijobs: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
