"""Reports from the database: the bill (`usage`) and the operator's view (`stats`)."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aijobs.scheduling import queue_view


def cmd_usage(args: argparse.Namespace) -> int:
    """Spend by model and by day from the ledger, and the bill at `--scale` times the
    traffic, before and after the cache's savings."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from aijobs.billing import usage
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


_STATS = {
    "queue": """
        SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
        FROM jobs WHERE status = 'queued' AND leader_id IS NULL""",
    "by_status": """
        SELECT status, count(*) FROM jobs
        WHERE created_at > now() - interval '1 hour' GROUP BY status ORDER BY status""",
    "latency": """
        SELECT model, count(*),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
        FROM attempts
        WHERE started_at > now() - interval '1 hour' AND latency_ms IS NOT NULL
        GROUP BY model ORDER BY model""",
    "spend": """
        SELECT date_trunc('hour', started_at), sum(cost_usd), count(*) FROM attempts
        WHERE started_at > now() - interval '6 hours' GROUP BY 1 ORDER BY 1""",
}


def cmd_stats(_: argparse.Namespace) -> int:
    """Queue depth (in all, and by tenant and priority), jobs by status in the last hour,
    provider latency, spend per hour — from the database, so it works without Prometheus."""
    from sqlalchemy import text

    from aijobs.db import get_engine
    from aijobs.scheduling import queue_view

    with get_engine().connect() as conn:
        rows = {name: conn.execute(text(sql)).all() for name, sql in _STATS.items()}
        by_tenant = queue_view.by_tenant(conn, busy_only=True)
    depth, oldest = rows["queue"][0]
    print(f"queue: {depth} job(s) waiting, the oldest for {float(oldest):.1f} s")
    _print_queue_by_tenant(by_tenant)
    by_status = ", ".join(f"{status} {count}" for status, count in rows["by_status"]) or "none"
    print(f"jobs created in the last hour: {by_status}")
    print("provider latency, last hour:")
    for model, calls, p50, p95 in rows["latency"]:
        print(f"  {model:<34} {calls:>7} calls  p50 {p50:>8.0f} ms  p95 {p95:>8.0f} ms")
    print("spend per hour (UTC):")
    for hour, spend, calls in rows["spend"]:
        print(f"  {hour:%Y-%m-%d %H:00}  {Decimal(spend):>12.6f} USD  {calls:>7} calls")
    return 0


def _print_queue_by_tenant(tenants: list[queue_view.TenantQueue]) -> None:
    """Tenants with jobs queued or running, busiest first, a line per priority."""
    print("queue by tenant (leaders; oldest queued since created):")
    if not tenants:
        print("  none")
        return
    print(f"  {'tenant':<30} {'priority':<12} {'queued':>8} {'running':>8} {'oldest queued':>14}")
    for tenant in sorted(tenants, key=lambda t: (-t.queued, -t.running, t.name)):
        for priority, load in tenant.by_priority.items():
            if not (load.queued or load.running):
                continue
            age = "" if load.oldest_queued_s is None else f"{load.oldest_queued_s:.1f} s"
            print(
                f"  {tenant.name:<30} {priority:<12} {load.queued:>8} {load.running:>8} {age:>14}"
            )
