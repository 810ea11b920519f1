"""Every tenant's prompts, for the operator (the admin page): each prompt with its
tenant, latest version and labels, by tenant then name, filterable by tenant; and one
prompt's versions in brief. The tenant API never reaches this module: it sees one
tenant's prompts (service.py)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from aijobs.prompts.service import labels_of, prompt_id

# Keyset pages on (tenant name, prompt name), both unique in their scope; the cursor is
# the last prompt's id, so it needs no encoding.
_ALL = text(
    """
    SELECT p.id, p.tenant_id, t.name AS tenant, p.name, p.latest_version,
           v.created_at AS updated_at
    FROM prompts p
    JOIN tenants t ON t.id = p.tenant_id
    JOIN prompt_versions v ON v.prompt_id = p.id AND v.version = p.latest_version
    WHERE (CAST(:tenant_id AS uuid) IS NULL OR p.tenant_id = :tenant_id)
      AND (CAST(:tenant_name AS text) IS NULL OR t.name = :tenant_name)
      AND (CAST(:after AS bigint) IS NULL OR (t.name, p.name) > (
            SELECT t2.name, p2.name FROM prompts p2 JOIN tenants t2 ON t2.id = p2.tenant_id
            WHERE p2.id = :after))
    ORDER BY t.name, p.name
    LIMIT :limit
    """
)

# A version in brief: what the list of versions shows, without loading every version's
# content (a prompt may have a thousand versions of up to 256 KiB).
_BRIEF = text(
    """
    SELECT version, content ->> 'model' AS model, content ->> 'note' AS note, variables,
           size_bytes, created_at
    FROM prompt_versions WHERE prompt_id = :prompt_id ORDER BY version DESC
    """
)


def list_all(
    session: Session, *, tenant: str | None, limit: int, cursor: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of prompts of every tenant (or of one, by name or id), and the next cursor."""
    tenant_id: uuid.UUID | None = None
    tenant_name: str | None = None
    if tenant is not None:
        try:
            tenant_id = uuid.UUID(tenant)
        except ValueError:
            tenant_name = tenant
    conn = session.connection()
    params = {
        "tenant_id": tenant_id,
        "tenant_name": tenant_name,
        "after": cursor,
        "limit": limit + 1,
    }
    rows = list(conn.execute(_ALL, params).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    labels = labels_of(conn, [row["id"] for row in rows])
    data = [
        {
            "tenant": row["tenant"],
            "tenant_id": str(row["tenant_id"]),
            "name": row["name"],
            "latest_version": row["latest_version"],
            "updated_at": row["updated_at"].isoformat(),
            "labels": labels.get(row["id"], {}),
        }
        for row in rows
    ]
    return data, (rows[-1]["id"] if more and rows else None)


def outline(session: Session, tenant_id: uuid.UUID, name: str) -> dict[str, Any]:
    """One prompt: its labels and its versions in brief, newest first (NotFound if the
    tenant has no such prompt)."""
    conn = session.connection()
    found = prompt_id(conn, tenant_id, name)
    versions = [
        {
            "version": row["version"],
            "model": row["model"],
            "note": row["note"],
            "variables": row["variables"],
            "size_bytes": row["size_bytes"],
            "created_at": row["created_at"].isoformat(),
        }
        for row in conn.execute(_BRIEF, {"prompt_id": found}).mappings()
    ]
    return {"name": name, "labels": labels_of(conn, [found]).get(found, {}), "versions": versions}
