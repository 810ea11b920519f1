"""The `aijobs` command: the process entry point, and the one place that wires the
edges together (it imports api/ and worker/ lazily, inside the commands that run them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from decimal import Decimal

from aijobs.errors import AppError
from aijobs.settings import get_settings
from cli import batches, datasets, evals, keys, processes, prompts, reports, tenants, triage
from cli import dev as dev_command


def _configure_logging(command: str) -> None:
    from aijobs import logs, sentry

    settings = get_settings()
    logs.configure(settings.log_format)
    if command in ("api", "worker"):
        sentry.init(settings, component=command)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aijobs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="alembic upgrade head").set_defaults(func=processes.cmd_migrate)

    api = sub.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(func=processes.cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=None, help="calls in flight per process")
    worker.add_argument(
        "--processes", type=int, default=1, help="worker processes (e.g. one per core)"
    )
    worker.set_defaults(func=processes.cmd_worker)

    dev = sub.add_parser("dev", help="migrate + api + worker, on the embedded default")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--concurrency", type=int, default=8)
    dev.set_defaults(func=dev_command.cmd_dev)

    key_parsers = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = key_parsers.add_parser("create", help="create a tenant if new and issue an API key")
    create.add_argument("--tenant", required=True)
    create.add_argument("--daily-budget", type=Decimal, default=None)
    create.add_argument("--monthly-budget", type=Decimal, default=None)
    create.add_argument("--rpm", type=int, default=None)
    create.add_argument(
        "--max-inflight", type=int, default=None, help="cap on its calls in flight, 1-100000"
    )
    create.add_argument("--weight", type=int, default=None, help="its share of the workers, 1-1000")
    create.set_defaults(func=keys.cmd_keys_create)
    rotate = key_parsers.add_parser(
        "rotate-webhook-secret",
        help="new webhook signing secret; the old one also signs for 24 h",
    )
    rotate.add_argument("--tenant", required=True)
    rotate.set_defaults(func=keys.cmd_keys_rotate_webhook_secret)

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
    listing.set_defaults(func=triage.cmd_jobs_list)

    rerun = sub.add_parser("rerun", help="re-run one job, or every finished job a filter matches")
    rerun.add_argument("--job", default=None)
    add_filter(rerun, None)  # --status, when other filters are given, defaults to failed
    rerun.add_argument("--dry-run", action="store_true")
    rerun.set_defaults(func=triage.cmd_rerun)

    report = sub.add_parser("usage", help="spend by model and day, and the bill at scale")
    report.add_argument("--tenant", default=None)
    report.add_argument("--days", type=int, default=30)
    report.add_argument("--scale", type=float, default=1.0)
    report.set_defaults(func=reports.cmd_usage)

    tenants.add_commands(sub)
    prompts.add_commands(sub)
    batches.add_commands(sub)
    datasets.add_commands(sub)
    evals.add_commands(sub)

    stats = sub.add_parser("stats", help="queue depth, jobs by status, latency, spend per hour")
    stats.set_defaults(func=reports.cmd_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "dev":
        dev_command.use_running_dev()
    _configure_logging(args.command)
    try:
        return int(args.func(args))
    except (RuntimeError, AppError) as exc:
        print(f"aijobs: {exc}", file=sys.stderr)
        return 2
