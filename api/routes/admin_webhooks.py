"""/admin/jobs/{id}/webhook: send a job's webhook again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from aijobs.jobs.view import view
from aijobs.tenants import audit
from aijobs.webhooks import service as webhook_service
from api.admin_auth import require_admin
from api.deps import SessionDep
from api.publisher import publish_delivery
from api.routes.admin_jobs import actor

# Every route here is the admin API: the token check is the router's, not a route's.
router = APIRouter(prefix="/admin/jobs", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/{job_id}/webhook/redeliver", status_code=202)
def redeliver_webhook(job_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    """202 with the job: its webhook is pending again and goes out now."""
    redelivered = webhook_service.redeliver(session, job_id)
    audit.record(session, "webhook.redeliver", actor(request), job_id=job_id)
    session.commit()  # publish only what is durable
    publish_delivery(redelivered.delivery_id)
    return view(redelivered.row)
