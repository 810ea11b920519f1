"""The sweeper publishes what the broker lost, and leaves a merely long backlog alone."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Connection, create_engine, text

from aijobs.jobs.sweeper import SWEEP_LOCK_KEY, due_for_publish
from tests.conftest import Services

_TENANT = text(
    "INSERT INTO tenants (id, name, webhook_secret) VALUES (:id, :name, 'whsec_x') RETURNING id"
)
_JOB = text(
    """
    INSERT INTO jobs (id, tenant_id, status, model, current_model, task, request, metadata,
                      max_attempts, model_attempts,
                      timeout_s, attempts, input_tokens, output_tokens, cost_usd, cache_hit,
                      enqueued_at, next_attempt_at, lease_owner, lease_expires_at, reserve_usd)
    VALUES (:id, :tenant, :status, 'sim/echo', 'sim/echo', 'chat', '{}', '{}', 3, 0,
            60, 0, 0, 0, 0, false,
            now() - make_interval(secs => :age), now() + make_interval(secs => :due_in),
            :owner, now() + make_interval(secs => :lease_in), '{}')
    """
)


def _job(conn: Connection, tenant: uuid.UUID, **values: Any) -> uuid.UUID:
    job_id = uuid.uuid4()
    params = {"status": "queued", "age": 0, "due_in": None, "owner": None, "lease_in": None}
    params.update(values)
    if params["due_in"] is None:
        params["due_in"] = -1_000_000
    if params["lease_in"] is None:
        params["lease_in"] = 0
    conn.execute(_JOB, {"id": job_id, "tenant": tenant, **params})
    return job_id


def _sweep(conn: Connection, **kwargs: Any) -> list[uuid.UUID]:
    """Our rows are uncommitted, so only this transaction sees them; wait for the lock."""
    deadline = time.monotonic() + 10
    while True:
        conn.execute(text("SAVEPOINT sweep"))
        ids = due_for_publish(conn, **kwargs)
        lock = text("SELECT pg_try_advisory_xact_lock(:key)")
        locked = conn.execute(lock, {"key": SWEEP_LOCK_KEY}).scalar()
        if ids or locked or time.monotonic() > deadline:
            return ids
        conn.execute(text("ROLLBACK TO SAVEPOINT sweep"))
        time.sleep(0.05)


def test_sweeper_choices(services: Services) -> None:
    engine = create_engine(services.database_url)
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            tenant = conn.execute(_TENANT, {"id": uuid.uuid4(), "name": uuid.uuid4().hex}).scalar()
            assert isinstance(tenant, uuid.UUID)
            oldest = _job(conn, tenant, age=100_000)
            older = _job(conn, tenant, age=90_000)
            _job(conn, tenant, age=80_000)
            fresh = _job(conn, tenant, age=0)
            lapsed = _job(conn, tenant, status="running", owner="dead", lease_in=-5)
            _job(conn, tenant, status="running", owner="alive", lease_in=30)
            not_due = _job(conn, tenant, age=100, due_in=60)
            stale_count = conn.execute(
                text(
                    "SELECT count(*) FROM jobs WHERE status = 'queued' AND enqueued_at"
                    " < now() - interval '5 seconds' AND coalesce(next_attempt_at, now()) <= now()"
                )
            ).scalar()
            assert isinstance(stale_count, int)

            # Two messages fewer in the broker than stale jobs: the two oldest go out again,
            # with the lapsed lease; the fresh, the alive and the not-yet-due stay put.
            ids = _sweep(conn, queue_length=stale_count - 2, stale_s=5, trickle=0)
            assert set(ids) == {lapsed, oldest, older}
            assert fresh not in ids and not_due not in ids
            status = conn.execute(text("SELECT status FROM jobs WHERE id = :id"), {"id": lapsed})
            assert status.scalar() == "queued"

            # Nothing missing from the broker: a long backlog is not duplicated...
            assert _sweep(conn, queue_length=stale_count, stale_s=5, trickle=0) == []
            # ...but a long queue can still miss a job: the oldest still waiting (the
            # third; the first two were just sent) goes out again, one per sweep here.
            ids = _sweep(conn, queue_length=stale_count, stale_s=5, trickle=1)
            assert len(ids) == 1 and ids[0] not in {oldest, older, fresh, not_due}
        finally:
            trans.rollback()
    engine.dispose()
