"""Batches for the operator: /admin/batches (JSON, the admin token) and the admin page's
/admin/ui/batches (every tenant's batches, newest first, with a progress bar, counts by
status and cost) and /admin/ui/batches/{id} (a batch and its first jobs, each linking to
its job page). Read only: a batch is cancelled through the tenant API, its jobs re-run
from their pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from aijobs.batches import catalog
from aijobs.errors import InvalidRequest, NotFound
from api import admin_session
from api.admin_auth import require_admin
from api.deps import SessionDep
from api.routes.admin_page import render_page

api = APIRouter(prefix="/admin/batches", tags=["admin"], dependencies=[Depends(require_admin)])
pages = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(admin_session.require_session)],
)
PAGE_SIZE = 50
JOBS_SHOWN = 50


@api.get("")
def list_batches(
    session: SessionDep,
    tenant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Every tenant's batches (or one tenant's, by name or id), newest first."""
    data, next_cursor = catalog.list_all(
        session.connection(), tenant=tenant or None, limit=limit, cursor=cursor
    )
    return {"data": data, "next_cursor": next_cursor}


@api.get("/{batch_id}")
def get_batch(
    session: SessionDep, batch_id: str, jobs: Annotated[int, Query(ge=0, le=1000)] = 100
) -> dict[str, Any]:
    """The batch with its tenant and its first `jobs` jobs in input order."""
    return catalog.one(session.connection(), batch_id, jobs=jobs)


def progress(counts: dict[str, int]) -> dict[str, Any]:
    """The bar as the page draws it: each ended status's share of the total (percent,
    one decimal), and the jobs ended."""
    total = max(counts["total"], 1)
    ended = counts["succeeded"] + counts["failed"] + counts["cancelled"]
    shares = {
        status: f"{100 * counts[status] / total:.1f}"
        for status in ("succeeded", "failed", "cancelled")
    }
    return {**shares, "ended": ended, "total": counts["total"], "pct": 100 * ended // total}


@pages.get("/ui/batches")
def batches_page(
    request: Request, session: SessionDep, tenant: str = "", cursor: str = ""
) -> Response:
    try:
        rows, next_cursor = catalog.list_all(
            session.connection(),
            tenant=tenant.strip() or None,
            limit=PAGE_SIZE,
            cursor=cursor or None,
        )
    except InvalidRequest as exc:
        rows, next_cursor, error = [], None, exc.detail
    else:
        error = ""
    for row in rows:
        row["bar"] = progress(row["counts"])
    return render_page(
        request,
        "batches.html",
        {"batches": rows, "tenant": tenant, "next_cursor": next_cursor or "", "error": error},
    )


@pages.get("/ui/batches/{batch_id}")
def batch_page(request: Request, session: SessionDep, batch_id: str) -> Response:
    try:
        batch = catalog.one(session.connection(), batch_id, jobs=JOBS_SHOWN)
    except NotFound as exc:
        return render_page(request, "error.html", {"error": exc.detail}, status_code=404)
    batch["bar"] = progress(batch["counts"])
    return render_page(request, "batch.html", {"batch": batch, "shown": JOBS_SHOWN})
