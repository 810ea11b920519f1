"""/v1/jobs/{id}/webhook-deliveries: the attempt log of a job's webhook."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aijobs.webhooks import service as webhook_service
from api.deps import SessionDep, TenantDep

router = APIRouter(prefix="/v1/jobs", tags=["webhooks"])


@router.get("/{job_id}/webhook-deliveries")
def list_webhook_deliveries(job_id: str, tenant: TenantDep, session: SessionDep) -> dict[str, Any]:
    """Every attempt, oldest first: when, the status code or the connection error, the
    latency, and the first KiB of the answer."""
    return {"data": webhook_service.attempts(session, tenant.id, job_id)}
