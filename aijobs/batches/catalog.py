"""Every tenant's batches, for the operator (the admin page and /admin/batches): newest
first, filterable by tenant, each with its tenant; one batch with its first jobs. The
tenant API never reaches this module: it sees one tenant's batches (service.py)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, text

from aijobs import cursor as cursor_of
from aijobs.errors import NotFound
from aijobs.money import usd

from .view import view

_DELIVERY = """LEFT JOIN LATERAL (SELECT status, attempts FROM webhook_deliveries
                       WHERE batch_id = b.id ORDER BY seq DESC LIMIT 1) d ON true"""
# Keyset pages on (created_at, id), like the tenant's list.
_ALL = text(
    f"""
    SELECT b.*, t.name AS tenant, d.status AS delivery_status,
           d.attempts AS delivery_attempts
    FROM batches b
    JOIN tenants t ON t.id = b.tenant_id
    {_DELIVERY}
    WHERE (CAST(:tenant_id AS uuid) IS NULL OR b.tenant_id = :tenant_id)
      AND (CAST(:tenant_name AS text) IS NULL OR t.name = :tenant_name)
      AND (CAST(:created AS timestamptz) IS NULL
           OR (b.created_at, b.id) < (CAST(:created AS timestamptz), CAST(:last AS uuid)))
    ORDER BY b.created_at DESC, b.id DESC
    LIMIT :limit
    """
)
_ONE = text(
    f"""
    SELECT b.*, t.name AS tenant, d.status AS delivery_status,
           d.attempts AS delivery_attempts
    FROM batches b
    JOIN tenants t ON t.id = b.tenant_id
    {_DELIVERY}
    WHERE b.id = :id
    """
)
_JOBS = text(
    """
    SELECT id, batch_index, custom_id, status, priority, model, attempts, error_code,
           cost_usd, cache_hit, created_at, finished_at
    FROM jobs WHERE batch_id = :id ORDER BY batch_index LIMIT :limit
    """
)


def _batch(row: Any) -> dict[str, Any]:
    webhook = None
    if row["delivery_status"] is not None:
        webhook = {"status": row["delivery_status"], "attempts": row["delivery_attempts"]}
    return {**view(row, webhook), "tenant": row["tenant"], "tenant_id": str(row["tenant_id"])}


def list_all(
    conn: Connection, *, tenant: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of batches of every tenant (or of one, by name or id), newest first, and
    the next cursor."""
    tenant_id: uuid.UUID | None = None
    tenant_name: str | None = None
    if tenant is not None:
        try:
            tenant_id = uuid.UUID(tenant)
        except ValueError:
            tenant_name = tenant
    created, last = cursor_of.read_keyset(cursor) if cursor else (None, None)
    params = {
        "tenant_id": tenant_id,
        "tenant_name": tenant_name,
        "created": created,
        "last": last,
        "limit": limit + 1,
    }
    rows = conn.execute(_ALL, params).mappings().all()
    next_cursor = (
        cursor_of.keyset(rows[limit - 1]["created_at"], rows[limit - 1]["id"])
        if len(rows) > limit
        else None
    )
    return [_batch(row) for row in rows[:limit]], next_cursor


def one(conn: Connection, batch_id: str, *, jobs: int) -> dict[str, Any]:
    """A batch of any tenant with its first `jobs` jobs in input order (NotFound)."""
    try:
        parsed = uuid.UUID(batch_id)
    except ValueError:
        raise NotFound(f"no batch {batch_id}") from None
    row = conn.execute(_ONE, {"id": parsed}).mappings().first()
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    listed = [
        {
            "id": str(job["id"]),
            "index": job["batch_index"],
            "custom_id": job["custom_id"],
            "status": job["status"],
            "priority": job["priority"],
            "model": job["model"],
            "attempts": job["attempts"],
            "error_code": job["error_code"],
            "cost_usd": usd(job["cost_usd"]),
            "cache_hit": job["cache_hit"],
            "created_at": job["created_at"].isoformat(),
            "finished_at": job["finished_at"].isoformat() if job["finished_at"] else None,
        }
        for job in conn.execute(_JOBS, {"id": parsed, "limit": jobs}).mappings()
    ]
    return {**_batch(row), "jobs": listed}
