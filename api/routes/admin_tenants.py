"""/admin/tenants: budgets, rpm, the share of the workers (weight, max_inflight) and keys
(create, revoke), spend at a glance; /admin/audit: what admins did."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from aijobs.billing import budget
from aijobs.models import ApiKey, Tenant
from aijobs.tenants import audit
from aijobs.tenants.service import (
    MAX_INFLIGHT_RANGE,
    WEIGHT_RANGE,
    create_key,
    keys_of,
    revoke_key,
    share_now,
    tenant_by_ref,
    update_limits,
)
from api.admin_auth import require_admin
from api.deps import SessionDep, forget_cached_keys
from api.routes.admin_jobs import actor

# Every route here is the admin API: the token check is the router's, not a route's.
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_budget_usd: Decimal | None = Field(default=None, ge=0)
    monthly_budget_usd: Decimal | None = Field(default=None, ge=0)
    rpm: int | None = Field(default=None, ge=1)
    # Its share of the workers against other tenants' (not sent: unchanged; null refused).
    weight: int | None = Field(default=None, ge=WEIGHT_RANGE[0], le=WEIGHT_RANGE[1])
    # Its calls in flight across all workers (null: no cap).
    max_inflight: int | None = Field(
        default=None, ge=MAX_INFLIGHT_RANGE[0], le=MAX_INFLIGHT_RANGE[1]
    )

    @field_validator("weight")
    @classmethod
    def _weight_not_cleared(cls, weight: int | None) -> int:
        # Called for a value sent, never for the default: only an explicit null lands here.
        if weight is None:
            raise ValueError(
                f"weight cannot be null (between {WEIGHT_RANGE[0]} and {WEIGHT_RANGE[1]})"
            )
        return weight


SHARE = ("weight", "max_inflight")


class NewTenant(Limits):
    name: str = Field(min_length=1, max_length=200)


def _key(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _tenant(session: SessionDep, tenant: Tenant) -> dict[str, Any]:
    daily, monthly = budget.state(session.connection(), tenant.id)
    return {
        "id": str(tenant.id),
        "name": tenant.name,
        "rpm": tenant.rpm,
        "weight": tenant.weight,
        "max_inflight": tenant.max_inflight,
        "created_at": tenant.created_at.isoformat(),
        "budget": {"daily": daily.as_json(), "monthly": monthly.as_json()},
        "keys": [_key(key) for key in keys_of(session, tenant)],
    }


@router.get("/tenants")
def list_tenants(session: SessionDep) -> dict[str, Any]:
    tenants = session.scalars(select(Tenant).order_by(Tenant.name))
    return {"data": [_tenant(session, tenant) for tenant in tenants]}


@router.post("/tenants", status_code=201)
def create_tenant(body: NewTenant, session: SessionDep, request: Request) -> dict[str, Any]:
    """Creates the tenant (or adds a key to an existing one); the key is shown once."""
    issued = create_key(
        session,
        body.name,
        daily_budget=body.daily_budget_usd,
        monthly_budget=body.monthly_budget_usd,
        rpm=body.rpm,
        weight=body.weight,
        max_inflight=body.max_inflight,
    )
    limits = body.model_dump(exclude_unset=True, exclude={"name"})
    audit.record(session, "tenant.create", actor(request), tenant=body.name, limits=_shown(limits))
    tenant = tenant_by_ref(session, body.name)
    shown = {
        **_tenant(session, tenant),
        "api_key": issued.api_key,
        "webhook_secret": issued.webhook_secret,
    }
    _share_after_commit(session, tenant, limits)
    return shown


@router.get("/tenants/{ref}")
def get_tenant(ref: str, session: SessionDep) -> dict[str, Any]:
    return _tenant(session, tenant_by_ref(session, ref))


@router.patch("/tenants/{ref}")
def patch_tenant(ref: str, body: Limits, session: SessionDep, request: Request) -> dict[str, Any]:
    """Only the fields sent change; null clears a limit."""
    tenant = tenant_by_ref(session, ref)
    changes = body.model_dump(exclude_unset=True)
    update_limits(session, tenant, changes)
    audit.record(
        session, "tenant.update", actor(request), tenant=tenant.name, changes=_shown(changes)
    )
    shown = _tenant(session, tenant)
    _share_after_commit(session, tenant, changes)
    return shown


def _shown(changes: dict[str, Any]) -> dict[str, str | None]:
    return {k: None if v is None else str(v) for k, v in changes.items()}


def _share_after_commit(session: SessionDep, tenant: Tenant, changes: dict[str, Any]) -> None:
    """A new weight or cap is committed, then set in the fair queue at once (a failure
    there is logged: the tenant's next push carries it anyway)."""
    if not changes.keys() & SHARE:
        return
    tenant_id, weight, max_inflight = tenant.id, tenant.weight, tenant.max_inflight
    session.commit()
    share_now(tenant_id, weight, max_inflight)


@router.post("/tenants/{ref}/keys", status_code=201)
def add_key(ref: str, session: SessionDep, request: Request) -> dict[str, Any]:
    tenant = tenant_by_ref(session, ref)
    issued = create_key(session, tenant.name)
    audit.record(session, "key.create", actor(request), tenant=tenant.name)
    return {"tenant": tenant.name, "api_key": issued.api_key}


@router.post("/tenants/{ref}/keys/{key_id}/revoke")
def revoke(ref: str, key_id: str, session: SessionDep, request: Request) -> dict[str, Any]:
    """A revoked key stops working at once on this API process, within seconds on others
    (they cache verified keys for 5 s)."""
    tenant = tenant_by_ref(session, ref)
    key = revoke_key(session, tenant, key_id)
    forget_cached_keys()
    audit.record(session, "key.revoke", actor(request), tenant=tenant.name, key=key.prefix)
    return _key(key)


@router.get("/audit")
def audit_log(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    return {"data": audit.recent(session, limit)}
