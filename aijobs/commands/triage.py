"""Jobs across tenants from the command line: list them, re-run them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


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
