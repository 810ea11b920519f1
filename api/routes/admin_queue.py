"""The queue by tenant for the operator: GET /admin/queue (JSON, the admin token) and the
admin page's /admin/ui/queue. For each tenant its weight and cap, its jobs queued and
running by priority with the oldest queued job's age (Postgres, queue_view), and its
calls in flight now across the workers (the fair queue's Redis; null, or "?" on the
page, when Redis does not answer). Busiest tenants first. Read only: a tenant's share
changes on the tenants page or through PATCH /admin/tenants/{id}."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from aijobs.scheduling import fair_queue, queue_view
from api import admin_session
from api.admin_auth import require_admin
from api.deps import SessionDep
from api.routes.admin_page import render_page

log = logging.getLogger(__name__)

api = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
pages = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(admin_session.require_session)],
)


def _in_flight(tenants: list[queue_view.TenantQueue]) -> dict[uuid.UUID, int | None]:
    """Each tenant's calls in flight now; None for all when Redis fails (one failure is
    enough: the page must not wait a timeout per tenant)."""
    try:
        conn = fair_queue.client()
        return {tenant.id: fair_queue.in_flight(conn, tenant.id) for tenant in tenants}
    except Exception as exc:
        log.warning("queue view: calls in flight unknown, Redis did not answer: %s", exc)
        return {tenant.id: None for tenant in tenants}


def _queue(session: SessionDep) -> list[dict[str, Any]]:
    tenants = queue_view.by_tenant(session.connection())
    tenants.sort(key=lambda t: (-t.queued, -t.running, t.name))
    now = _in_flight(tenants)
    return [{**tenant.as_json(), "in_flight_now": now[tenant.id]} for tenant in tenants]


@api.get("/queue")
def queue(session: SessionDep) -> dict[str, Any]:
    """Every tenant, busiest first: jobs queued and running by priority (leaders only),
    the oldest queued job's age in seconds, weight, max_inflight, in_flight_now."""
    return {"data": _queue(session), "priorities": list(fair_queue.PRIORITIES)}


def _age(seconds: float | None) -> str:
    """An age as the page shows it: its two largest units."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


@pages.get("/ui/queue")
def queue_page(request: Request, session: SessionDep) -> Response:
    rows = _queue(session)
    for row in rows:
        for load in row["by_priority"].values():
            load["age"] = _age(load["oldest_queued_s"])
    return render_page(
        request, "queue.html", {"tenants": rows, "priorities": fair_queue.PRIORITIES}
    )


# One router for the app to include: the JSON API and the page, each with its checks.
router = APIRouter()
router.include_router(api)
router.include_router(pages)
