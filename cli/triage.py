"""Jobs across tenants from the command line: list them, re-run them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    from datetime import datetime

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return {
        "status": args.status,
        "error_code": args.error_code,
        "tenant": args.tenant,
        "model": args.model,
        "since": when(args.since),
        "until": when(args.until),
    }


def _filter(args: argparse.Namespace) -> Any:
    from aijobs.jobs.triage import JobFilter

    return JobFilter(**_fields(args))


def _filter_fields(args: argparse.Namespace) -> dict[str, str | None]:
    names = ("status", "error_code", "tenant", "model", "since", "until")
    return {name: getattr(args, name) for name in names}


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from aijobs.db import session_scope
    from aijobs.jobs import triage

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

    from aijobs.db import session_scope
    from aijobs.errors import InvalidRequest
    from aijobs.jobs import triage

    where = None
    if not args.job:
        given = {name: value for name, value in _fields(args).items() if value is not None}
        try:
            where = triage.bulk_filter(given)
        except InvalidRequest:
            # Never "every failed job": say what is missing, act on nothing.
            print(
                "aijobs: rerun needs --job ID or at least one filter"
                " (--status, --error-code, --tenant, --model, --since, --until)",
                file=sys.stderr,
            )
            return 2
    with session_scope() as session:
        if where is None:
            ids = [triage.get(session, args.job).id]
        else:
            ids = triage.select_for_rerun(session, where)
    if args.dry_run:
        print(json.dumps({"count": len(ids), "ids": [str(i) for i in ids], "dry_run": True}))
        return 0
    from api.publisher import publish_run

    def progress(shown: int, total: int) -> None:
        bar = "#" * (30 * shown // max(total, 1))
        print(f"\r[{bar:<30}] {shown}/{total}", end="", file=sys.stderr, flush=True)

    outcome = triage.rerun(
        ids,
        actor=f"cli:{getpass.getuser()}",
        action="jobs.rerun",
        detail={"job_id": args.job} if where is None else {"filter": _filter_fields(args)},
        publish=publish_run,
        progress=progress,
    )
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
