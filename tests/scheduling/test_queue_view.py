"""The queue by tenant from Postgres: counts and ages per tenant and priority, leaders
only, every tenant listed; and the statement reads the jobs in flight by index."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, text

from aijobs.scheduling import queue_view
from tests.admin import queue_jobs
from tests.conftest import Services
from tests.helpers import unique


@pytest.fixture
def conn(services: Services) -> Iterator[Connection]:
    """A transaction rolled back at the end: the rows are this test's alone."""
    engine = create_engine(services.database_url)
    with engine.connect() as connection:
        connection.begin()
        yield connection
        connection.rollback()
    engine.dispose()


def test_counts_and_ages_by_tenant_and_priority(conn: Connection) -> None:
    busy = queue_jobs.tenant(conn, unique("busy"), weight=4, cap=3)
    idle = queue_jobs.tenant(conn, unique("idle"))
    (leader,) = queue_jobs.jobs(conn, busy, "queued", age_s=120)
    queue_jobs.jobs(conn, busy, "queued", count=2, age_s=30)
    queue_jobs.jobs(conn, busy, "queued", "batch", count=5, age_s=600)
    queue_jobs.jobs(conn, busy, "running", count=2)
    queue_jobs.jobs(conn, busy, "running", "batch")
    # Neither a follower (it waits on its leader) nor a finished job is in the queue.
    queue_jobs.jobs(conn, busy, "queued", count=3, age_s=9999, leader=leader)
    queue_jobs.jobs(conn, busy, "succeeded", count=4, age_s=9999)
    queue_jobs.jobs(conn, idle, "failed", "batch", age_s=9999)

    found = {t.id: t for t in queue_view.by_tenant(conn)}
    shown = found[busy]
    assert (shown.weight, shown.max_inflight) == (4, 3)
    interactive, batch = shown.by_priority["interactive"], shown.by_priority["batch"]
    assert (interactive.queued, interactive.running) == (3, 2)
    assert (batch.queued, batch.running) == (5, 1)
    assert interactive.oldest_queued_s == pytest.approx(120, abs=5)
    assert batch.oldest_queued_s == pytest.approx(600, abs=5)
    assert (shown.queued, shown.running) == (8, 3)
    assert shown.oldest_queued_s == pytest.approx(600, abs=5)

    quiet = found[idle]
    assert list(quiet.by_priority) == ["interactive", "batch"]
    assert all(load == queue_view.Load() for load in quiet.by_priority.values())
    assert quiet.oldest_queued_s is None and quiet.max_inflight is None

    busy_only = {t.id for t in queue_view.by_tenant(conn, busy_only=True)}
    assert busy in busy_only and idle not in busy_only
    assert shown.as_json()["by_priority"]["batch"] == {
        "queued": 5,
        "running": 1,
        "oldest_queued_s": pytest.approx(600, abs=5),
    }


def test_running_only_has_no_queued_age(conn: Connection) -> None:
    tenant = queue_jobs.tenant(conn, unique("running"))
    queue_jobs.jobs(conn, tenant, "running", "batch", age_s=50)
    (shown,) = [t for t in queue_view.by_tenant(conn) if t.id == tenant]
    assert shown.by_priority["batch"] == queue_view.Load(queued=0, running=1)


def test_the_statement_reads_the_jobs_in_flight_by_index(conn: Connection) -> None:
    """With a few thousand finished jobs beside a few in flight, the plan reads the
    partial index of leaders queued or running, never the whole table."""
    tenants = [queue_jobs.tenant(conn, unique(f"plan-{i}")) for i in range(5)]
    conn.execute(
        text(
            """
            INSERT INTO jobs (id, tenant_id, status, model, current_model, task, request,
                              metadata, max_attempts, model_attempts, timeout_s, attempts,
                              input_tokens, output_tokens, cost_usd, cache_hit, reserve_usd)
            SELECT gen_random_uuid(), (:tenants ::uuid[])[1 + g % 5],
                   CASE WHEN g % 200 = 0 THEN 'queued' ELSE 'succeeded' END,
                   'sim/echo', 'sim/echo', 'chat', '{}', '{}', 3, 0, 60, 0, 0, 0, 0, false, '{}'
            FROM generate_series(1, 5000) g
            """
        ),
        {"tenants": [str(t) for t in tenants]},
    )
    conn.execute(text("ANALYZE jobs"))
    plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + queue_view._BY_TENANT.text)))
    assert "uq_jobs_inflight_leader" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan
