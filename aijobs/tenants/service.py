"""Tenants and their API keys: create, look up by key (hashed), never store a key in clear;
rotate the webhook signing secret; set a tenant's limits and its share of the workers."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aijobs.billing import budget
from aijobs.errors import InvalidRequest, NotFound, Unauthorized
from aijobs.models import ApiKey, Tenant
from aijobs.scheduling import fair_queue

log = logging.getLogger(__name__)

KEY_PREFIX = "aj_"
# After a rotation, the previous webhook secret still signs for this long.
ROTATION_GRACE = timedelta(hours=24)
# A tenant's share of the workers, and its cap on calls in flight (the CHECKs of 0018).
WEIGHT_RANGE = (1, 1000)
MAX_INFLIGHT_RANGE = (1, 100_000)
LIMITS = ("daily_budget_usd", "monthly_budget_usd", "rpm", "weight", "max_inflight")


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class IssuedKey:
    tenant: str
    api_key: str
    webhook_secret: str


def create_key(
    session: Session,
    tenant_name: str,
    *,
    daily_budget: Decimal | None = None,
    monthly_budget: Decimal | None = None,
    rpm: int | None = None,
    weight: int | None = None,
    max_inflight: int | None = None,
) -> IssuedKey:
    """Create the tenant if new (updating the limits given), and issue a new API key. A
    budget given counts what the current day and month already spent (the ledger). A
    weight or max_inflight given takes effect in the fair queue once committed and
    passed to `share_now` (or with the tenant's next job pushed)."""
    _check_share(weight=weight, max_inflight=max_inflight)
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        tenant = Tenant(name=tenant_name, webhook_secret=new_webhook_secret())
        session.add(tenant)
    if daily_budget is not None:
        tenant.daily_budget_usd = daily_budget
    if monthly_budget is not None:
        tenant.monthly_budget_usd = monthly_budget
    if rpm is not None:
        tenant.rpm = rpm
    if weight is not None:
        tenant.weight = weight
    if max_inflight is not None:
        tenant.max_inflight = max_inflight
    session.flush()
    if daily_budget is not None or monthly_budget is not None:
        budget.recount(session.connection(), tenant.id)
    else:
        budget.ensure_counters(session.connection(), tenant.id)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(api_key), prefix=api_key[:10]))
    session.flush()
    return IssuedKey(tenant=tenant.name, api_key=api_key, webhook_secret=tenant.webhook_secret)


@dataclass(frozen=True)
class RotatedSecret:
    tenant: str
    webhook_secret: str
    previous_secret_expires_at: datetime


def rotate_webhook_secret(session: Session, tenant_name: str) -> RotatedSecret:
    """A new signing secret; the current one keeps signing beside it for ROTATION_GRACE
    (a secret rotated out earlier stops at once)."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name).with_for_update())
    if tenant is None:
        raise NotFound(f"no tenant {tenant_name}")
    expires_at = datetime.now(UTC) + ROTATION_GRACE
    tenant.previous_webhook_secret = tenant.webhook_secret
    tenant.previous_webhook_secret_expires_at = expires_at
    tenant.webhook_secret = new_webhook_secret()
    session.flush()
    return RotatedSecret(tenant.name, tenant.webhook_secret, expires_at)


@dataclass(frozen=True)
class TenantInfo:
    """What a request needs to know of its tenant: a snapshot, safe to cache briefly."""

    id: uuid.UUID
    name: str
    daily_budget_usd: Decimal | None
    monthly_budget_usd: Decimal | None
    rpm: int | None
    weight: int = 1
    max_inflight: int | None = None


def authenticate(session: Session, api_key: str) -> TenantInfo:
    tenant = session.scalar(
        select(Tenant)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None))
    )
    if tenant is None:
        raise Unauthorized("invalid or revoked API key")
    return TenantInfo(
        id=tenant.id,
        name=tenant.name,
        daily_budget_usd=tenant.daily_budget_usd,
        monthly_budget_usd=tenant.monthly_budget_usd,
        rpm=tenant.rpm,
        weight=tenant.weight,
        max_inflight=tenant.max_inflight,
    )


def tenant_by_ref(session: Session, ref: str) -> Tenant:
    """A tenant by id or name."""
    tenant = None
    try:
        tenant = session.get(Tenant, uuid.UUID(ref))
    except ValueError:
        tenant = session.scalar(select(Tenant).where(Tenant.name == ref))
    if tenant is None:
        raise NotFound(f"no tenant {ref}")
    return tenant


def _check_share(**values: int | None) -> None:
    """weight and max_inflight within their ranges (None: not given, or no cap)."""
    ranges = {"weight": WEIGHT_RANGE, "max_inflight": MAX_INFLIGHT_RANGE}
    for name, value in values.items():
        low, high = ranges[name]
        if value is not None and not low <= value <= high:
            raise InvalidRequest(f"{name} must be between {low} and {high}, not {value}")


def update_limits(session: Session, tenant: Tenant, changes: dict[str, Any]) -> None:
    """Set (or, with None, clear) daily_budget_usd, monthly_budget_usd, rpm,
    max_inflight; set weight (it cannot be cleared). A budget set or changed counts
    what the current day and month already spent (the ledger). A change of weight or
    max_inflight reaches the fair queue through `share_now`, after the commit."""
    if "weight" in changes and changes["weight"] is None:
        raise InvalidRequest(
            f"weight cannot be cleared (between {WEIGHT_RANGE[0]} and {WEIGHT_RANGE[1]})"
        )
    _check_share(weight=changes.get("weight"), max_inflight=changes.get("max_inflight"))
    for name in LIMITS:
        if name in changes:
            setattr(tenant, name, changes[name])
    session.flush()
    if "daily_budget_usd" in changes or "monthly_budget_usd" in changes:
        budget.recount(session.connection(), tenant.id)


def keys_of(session: Session, tenant: Tenant) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at)
        )
    )


def revoke_key(session: Session, tenant: Tenant, key_id: str) -> ApiKey:
    try:
        key = session.get(ApiKey, uuid.UUID(key_id))
    except ValueError:
        key = None
    if key is None or key.tenant_id != tenant.id:
        raise NotFound(f"no key {key_id} for this tenant")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
    session.flush()
    return key


def share_now(tenant_id: uuid.UUID, weight: int, max_inflight: int | None) -> bool:
    """Make a tenant's weight and cap effective in the fair queue at once; call it after
    the commit. Redis unreachable is logged, not raised: every push of the tenant's jobs
    carries its values too, so the change still lands with its next job."""
    try:
        fair_queue.configure_tenant(fair_queue.client(), tenant_id, weight, max_inflight)
    except Exception as exc:
        log.warning("tenant %s: weight and max_inflight not set in Redis now: %s", tenant_id, exc)
        return False
    return True
