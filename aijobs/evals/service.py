"""The eval service on the tenant's side: move an eval on before it is read, and
cancel it. Services flush; the edge commits, then publishes what it is handed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from aijobs.batches import transitions as batch_transitions
from aijobs.errors import Conflict
from aijobs.jobs import transitions as job_transitions

from . import report, transitions
from .advance import advance

# The judge jobs of an eval still queued (its own jobs are its batch's).
_QUEUED_JUDGES = text(
    """
    SELECT j.id FROM eval_results r
    CROSS JOIN LATERAL unnest(r.judge_job_ids) AS k(id)
    JOIN jobs j ON j.id = k.id
    WHERE r.eval_id = :eval_id AND r.scored_at IS NULL AND j.status = 'queued'
    """
)


def refresh(conn: Connection, tenant_id: uuid.UUID, eval_id: str) -> list[uuid.UUID]:
    """One bounded step of the tenant's eval if it is running (NotFound for another
    tenant's), so a reader sees fresh progress. Returns the jobs to publish."""
    row = report.find(conn, tenant_id, eval_id)
    if row["status"] != "running":
        return []
    return advance(conn, row["id"]).publish


@dataclass(frozen=True)
class Cancelled:
    eval: dict[str, Any]
    publish: list[uuid.UUID]  # followers that lead now (their leader was cancelled)


def cancel(conn: Connection, tenant_id: uuid.UUID, eval_id: str) -> Cancelled:
    """running -> cancelled: its batch's queued jobs and its queued judge jobs are
    cancelled (running ones finish), what has ended is scored (no new judge is asked),
    and the eval ends. A cancelled eval answers as it is; a completed one is 409."""
    row = report.find(conn, tenant_id, eval_id)
    transitions.lock(conn, row["id"])  # an advance in progress finishes first
    row = report.find(conn, tenant_id, row["id"])
    if row["status"] == "completed":
        raise Conflict(f"eval {eval_id} already completed; it cannot be cancelled")
    heirs: list[uuid.UUID] = []
    if row["status"] == "running":
        if row["batch_id"] is not None:
            heirs += batch_transitions.cancel(conn, row["batch_id"])
        for (judge_id,) in conn.execute(_QUEUED_JUDGES, {"eval_id": row["id"]}).all():
            cancelled = job_transitions.cancel(conn, judge_id)
            if cancelled.heir is not None:
                heirs.append(cancelled.heir)
        # What ended before the cancel is kept, scored; results of cancelled jobs stay
        # without a verdict.
        while advance(conn, row["id"], submit_judges=False, resolve_cancelled=False).resolved:
            pass
        transitions.cancel(conn, row["id"])
    return Cancelled(report.report(conn, tenant_id, row["id"]), heirs)
