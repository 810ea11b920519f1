"""The queue by tenant, from Postgres: each tenant's weight and cap, and for each priority
its jobs queued, running, and how long the oldest queued one has waited. What /metrics,
the admin queue view (/admin/queue, /admin/ui/queue) and `aijobs stats` show.

Counted as the rest of aijobs counts its queue (aijobs_queue_depth): leaders only, a
follower waits on its leader's call and needs no worker of its own. The age is from
`created_at`: `enqueued_at` is restamped whenever the sweeper publishes a job again, so
it says when the job was last pushed, not how long it has waited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from aijobs.scheduling.fair_queue import PRIORITIES

# One grouped statement. The jobs side reads only jobs queued or running, through the
# partial index uq_jobs_inflight_leader (WHERE leader_id IS NULL AND status IN
# ('queued', 'running')): its cost follows the jobs in flight, not the table's size.
_BY_TENANT = text(
    """
    SELECT t.id, t.name, t.weight, t.max_inflight, j.priority, j.queued, j.running, j.oldest_s
    FROM tenants t
    LEFT JOIN (
        SELECT tenant_id, priority,
               count(*) FILTER (WHERE status = 'queued') AS queued,
               count(*) FILTER (WHERE status = 'running') AS running,
               extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'queued'))
                   AS oldest_s
        FROM jobs
        WHERE leader_id IS NULL AND status IN ('queued', 'running')
        GROUP BY tenant_id, priority
    ) j ON j.tenant_id = t.id
    ORDER BY t.name, t.id
    """
)


@dataclass(frozen=True)
class Load:
    """One tenant's jobs of one priority."""

    queued: int = 0
    running: int = 0
    oldest_queued_s: float | None = None  # None: nothing queued

    def as_json(self) -> dict[str, Any]:
        oldest = None if self.oldest_queued_s is None else round(self.oldest_queued_s, 3)
        return {"queued": self.queued, "running": self.running, "oldest_queued_s": oldest}


@dataclass(frozen=True)
class TenantQueue:
    id: uuid.UUID
    name: str
    weight: int
    max_inflight: int | None
    # Every priority, in PRIORITIES' order (a priority without jobs: zeros).
    by_priority: dict[str, Load] = field(default_factory=dict)

    @property
    def queued(self) -> int:
        return sum(load.queued for load in self.by_priority.values())

    @property
    def running(self) -> int:
        return sum(load.running for load in self.by_priority.values())

    @property
    def oldest_queued_s(self) -> float | None:
        ages = [load.oldest_queued_s for load in self.by_priority.values()]
        return max((age for age in ages if age is not None), default=None)

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": str(self.id),
            "tenant": self.name,
            "weight": self.weight,
            "max_inflight": self.max_inflight,
            "queued": self.queued,
            "running": self.running,
            "by_priority": {name: load.as_json() for name, load in self.by_priority.items()},
        }


def by_tenant(conn: Connection, *, busy_only: bool = False) -> list[TenantQueue]:
    """Every tenant (or, busy_only, those with a job queued or running), by name."""
    tenants: dict[uuid.UUID, tuple[Any, ...]] = {}
    loads: dict[uuid.UUID, dict[str, Load]] = {}
    for tenant_id, name, weight, cap, priority, queued, running, oldest in conn.execute(_BY_TENANT):
        tenants.setdefault(tenant_id, (name, weight, cap))
        per = loads.setdefault(tenant_id, {p: Load() for p in PRIORITIES})
        if priority is not None:
            age = None if oldest is None else max(float(oldest), 0.0)
            per[priority] = Load(int(queued), int(running), age)
    result = [
        TenantQueue(tenant_id, name, weight, cap, loads[tenant_id])
        for tenant_id, (name, weight, cap) in tenants.items()
    ]
    if busy_only:
        result = [t for t in result if t.queued or t.running]
    return result
