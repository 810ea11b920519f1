"""/v1/tenant: which tenant the caller's key belongs to (the command line checks it
before acting for a named tenant)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import TenantDep

router = APIRouter(prefix="/v1/tenant", tags=["tenant"])


@router.get("")
def current_tenant(tenant: TenantDep) -> dict[str, str]:
    return {"id": str(tenant.id), "name": tenant.name}
