"""Jobs written straight into Postgres for the queue-by-tenant views: queued ones wait
for a retry an hour away and running ones hold a lease an hour long, so no worker or
sweeper of the shared stack touches them while a test reads them."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

_TENANT = text(
    """
    INSERT INTO tenants (id, name, webhook_secret, weight, max_inflight)
    VALUES (:id, :name, 'whsec_x', :weight, :cap)
    """
)
_JOB = text(
    """
    INSERT INTO jobs (id, tenant_id, status, model, current_model, task, request, metadata,
                      max_attempts, model_attempts, timeout_s, attempts, input_tokens,
                      output_tokens, cost_usd, cache_hit, reserve_usd, priority, leader_id,
                      created_at, next_attempt_at, lease_owner, lease_expires_at, finished_at)
    VALUES (:id, :tenant, CAST(:status AS text), 'sim/echo', 'sim/echo', 'chat', '{}', '{}',
            3, 0, 60, 0, 0, 0, 0, false, '{}', :priority, :leader,
            now() - make_interval(secs => :age_s),
            CASE WHEN CAST(:status AS text) = 'queued' THEN now() + interval '1 hour' END,
            CASE WHEN CAST(:status AS text) = 'running' THEN 'seeded-by-a-test' END,
            CASE WHEN CAST(:status AS text) = 'running' THEN now() + interval '1 hour' END,
            CASE WHEN CAST(:status AS text) IN ('succeeded', 'failed', 'cancelled') THEN now() END)
    """
)


def tenant(conn: Connection, name: str, weight: int = 1, cap: int | None = None) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    conn.execute(_TENANT, {"id": tenant_id, "name": name, "weight": weight, "cap": cap})
    return tenant_id


def jobs(
    conn: Connection,
    tenant_id: uuid.UUID,
    status: str,
    priority: str = "interactive",
    *,
    count: int = 1,
    age_s: float = 0,
    leader: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    for job_id in ids:
        conn.execute(
            _JOB,
            {
                "id": job_id,
                "tenant": tenant_id,
                "status": status,
                "priority": priority,
                "leader": leader,
                "age_s": age_s,
            },
        )
    return ids


def forget(conn: Connection, tenant_ids: list[uuid.UUID]) -> None:
    """The tenants and (by cascade) their jobs."""
    conn.execute(text("DELETE FROM tenants WHERE id = ANY(:ids)"), {"ids": tenant_ids})
