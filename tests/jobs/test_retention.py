"""Retention: the sweeper of a real worker purges the request and result of a job that
ended longer ago than AIJOBS_RETENTION_DAYS (30 in the test stack); the job, its
attempts, its costs and the usage report stay, and a purged job does not re-run."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import Connection, create_engine, text

from aijobs.jobs import transitions
from tests.conftest import Client, Services
from tests.helpers import chat, unique, wait_until
from tests.stack import ADMIN_TOKEN
from tests.webhook_receiver import Receiver

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PURGE_WAIT_S = 60.0  # the sweeper looks every 10 s; a loaded machine is slow


def _succeeded(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.submit(body)
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"], timeout_s=60)
    assert job["status"] == "succeeded", job
    return job


def _row(db: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    cursor = db.execute(
        """SELECT purged, request, result, metadata, fingerprint, error_message, cost_usd,
                  input_tokens, output_tokens, tenant_id
           FROM jobs WHERE id = %s""",
        (job_id,),
    )
    names = [column.name for column in cursor.description or ()]
    row = cursor.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def _expire(db: psycopg.Connection[Any], job_id: str) -> None:
    """The job ended 31 days ago (by the database clock, as the purge reads it), and
    its answer went into the cache then; the entry has not expired (as with a cache
    TTL longer than the retention period)."""
    db.execute(
        """UPDATE cache_entries c SET created_at = c.created_at - interval '31 days'
           FROM jobs j WHERE j.id = %s AND c.tenant_id = j.tenant_id
             AND c.fingerprint = j.fingerprint""",
        (job_id,),
    )
    db.execute("UPDATE jobs SET finished_at = now() - interval '31 days' WHERE id = %s", (job_id,))


def _wait_purged(db: psycopg.Connection[Any], job_id: str) -> None:
    wait_until(
        lambda: _row(db, job_id)["purged"],
        PURGE_WAIT_S,
        f"the sweeper to purge job {job_id}",
        interval_s=0.2,
    )


def test_an_expired_job_is_purged_and_its_costs_and_usage_stay(
    client: Client, db: psycopg.Connection[Any], receiver: Receiver
) -> None:
    prompt = unique("my card is 4111 1111 1111 1111")
    hook = receiver.path()
    old = _succeeded(
        client,
        chat(prompt, model="sim/echo", metadata={"email": "alice@example.com"}, webhook_url=hook),
    )
    recent = _succeeded(client, chat(unique("recent"), model="sim/echo"))
    assert old["purged"] is False and old["result"]["content"]
    wait_until(
        lambda: client.http.get(f"/v1/jobs/{old['id']}").json()["webhook"]["status"] == "delivered",
        what="the webhook delivery",
    )
    before = _row(db, old["id"])
    assert before["fingerprint"] is not None and prompt in str(before["request"])
    cached = "SELECT count(*) FROM cache_entries WHERE tenant_id = %s AND fingerprint = %s"
    key = (before["tenant_id"], before["fingerprint"])
    assert db.execute(cached, key).fetchone() == (1,)
    attempts_before = client.http.get(f"/admin/jobs/{old['id']}/attempts", headers=ADMIN).json()
    usage_before = client.http.get("/v1/usage", params={"group_by": "model"}).json()
    assert usage_before["total"]["calls"] == 2

    _expire(db, old["id"])
    _wait_purged(db, old["id"])

    after = _row(db, old["id"])
    # What the tenant sent and what came back is gone from the row...
    assert after["request"] == {} and after["result"] is None
    assert after["metadata"] == {} and after["fingerprint"] is None
    assert prompt not in str(after) and "alice" not in str(after)
    # ... and from the webhook delivery and the cache.
    bodies = db.execute(
        "SELECT body FROM webhook_deliveries WHERE job_id = %s", (old["id"],)
    ).fetchall()
    assert bodies == [(None,)]
    assert db.execute(cached, key).fetchone() == (0,)
    # The job, its attempts and its costs stay.
    assert (after["cost_usd"], after["input_tokens"], after["output_tokens"]) == (
        before["cost_usd"],
        before["input_tokens"],
        before["output_tokens"],
    )
    shown = client.http.get(f"/v1/jobs/{old['id']}").json()
    assert shown["purged"] is True and shown["result"] is None
    assert shown["status"] == "succeeded"
    assert (shown["cost_usd"], shown["usage"], shown["attempts"]) == (
        old["cost_usd"],
        old["usage"],
        old["attempts"],
    )
    assert shown["metadata"] == {}
    listed = client.http.get("/v1/jobs").json()["data"]
    assert {job["id"]: job["purged"] for job in listed} == {old["id"]: True, recent["id"]: False}
    admin = client.http.get(f"/admin/jobs/{old['id']}", headers=ADMIN).json()
    assert admin["purged"] is True and admin["result"] is None
    attempts_after = client.http.get(f"/admin/jobs/{old['id']}/attempts", headers=ADMIN).json()
    assert attempts_after == attempts_before
    assert Decimal(attempts_after["data"][0]["cost_usd"]) > 0
    # Usage for the period still counts its spend, unchanged.
    usage_after = client.http.get("/v1/usage", params={"group_by": "model"}).json()
    assert usage_after == usage_before

    # A job that ended recently keeps its request and result.
    kept = _row(db, recent["id"])
    assert kept["purged"] is False and kept["result"] == recent["result"]
    assert client.http.get(f"/v1/jobs/{recent['id']}").json()["result"] == recent["result"]


def test_a_purged_job_is_not_run_again(client: Client, db: psycopg.Connection[Any]) -> None:
    job = _succeeded(client, chat(unique("rerun me"), model="sim/echo"))
    _expire(db, job["id"])
    _wait_purged(db, job["id"])

    one = client.http.post(f"/admin/jobs/{job['id']}/rerun", headers=ADMIN)
    assert one.status_code == 409, one.text
    assert one.headers["content-type"].startswith("application/problem+json")
    assert "purged" in one.json()["detail"]

    bulk = client.http.post(
        "/admin/jobs/rerun", headers=ADMIN, json={"tenant": client.tenant, "status": "succeeded"}
    )
    assert bulk.status_code == 200, bulk.text
    assert bulk.json()["count"] == 0
    assert bulk.json()["skipped"] == {job["id"]: "purged"}

    shown = client.http.get(f"/v1/jobs/{job['id']}").json()
    assert (shown["status"], shown["purged"], shown["attempts"]) == ("succeeded", True, 1)
    assert _row(db, job["id"])["request"] == {}


_TENANT = text(
    "INSERT INTO tenants (id, name, webhook_secret) VALUES (:id, :name, 'whsec_x') RETURNING id"
)
_ENDED_JOB = text(
    """
    INSERT INTO jobs (id, tenant_id, status, model, current_model, task, request, metadata,
                      webhook_url, max_attempts, model_attempts, timeout_s, attempts,
                      input_tokens, output_tokens, cost_usd, cache_hit, reserve_usd, result,
                      error_code, error_message, error_retryable, fingerprint, started_at,
                      finished_at)
    VALUES (:id, :tenant, :status, 'sim/echo', 'sim/echo', 'chat',
            '{"messages": [{"role": "user", "content": "secret"}]}', '{"user": "alice"}',
            'http://127.0.0.1:9/hook', 3, 1, 60, 1, 10, 20, 0.5, false, '{}',
            '{"content": "secret answer"}', :code, :message, false, :fingerprint,
            now() - make_interval(days => :age_days),
            CASE WHEN :ended THEN now() - make_interval(days => :age_days) END)
    """
)
_ATTEMPT = text(
    """
    INSERT INTO attempts (job_id, tenant_id, attempt_no, model, outcome, error_code,
                          error_message, started_at, finished_at, input_tokens, output_tokens,
                          cost_usd, reserved_usd, budget_held, cost_estimated)
    SELECT id, tenant_id, 1, 'sim/echo', 'failed', 'invalid_output',
           'output does not match response_schema: ''secret answer'' is not an integer',
           started_at, finished_at, 10, 20, 0.5, 0.5, false, false
    FROM jobs WHERE id = :id
    """
)


def test_the_purge_statement(services: Services) -> None:
    """purge_expired itself, in a transaction no worker sees: oldest first in batches,
    everything that quotes the request or the result cleared, costs kept, only ended
    jobs older than the period, and a second run changes nothing."""
    engine = create_engine(services.database_url)
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            tenant = conn.execute(_TENANT, {"id": uuid.uuid4(), "name": uuid.uuid4().hex}).scalar()
            assert isinstance(tenant, uuid.UUID)

            def job(status: str, age_days: int, code: str | None = None) -> uuid.UUID:
                job_id = uuid.uuid4()
                values = {
                    "id": job_id,
                    "tenant": tenant,
                    "status": status,
                    "ended": status != "running",
                    "age_days": age_days,
                    "code": code,
                    "message": "the output was 'secret answer'" if code else None,
                    "fingerprint": uuid.uuid4().hex,
                }
                conn.execute(_ENDED_JOB, values)
                conn.execute(_ATTEMPT, {"id": job_id})
                return job_id

            oldest = job("failed", 40, code="invalid_output")
            older = job("succeeded", 35)
            recent = job("succeeded", 29)
            running = job("running", 40)  # started 40 days ago, not ended: never purged
            # The trigger of migration 0006 made the ended jobs' deliveries; as sent:
            conn.execute(
                text(
                    """UPDATE webhook_deliveries SET status = 'delivered',
                              body = '{"data": {"result": "secret answer"}}'
                       WHERE tenant_id = :tenant"""
                ),
                {"tenant": tenant},
            )
            conn.execute(
                text(
                    """INSERT INTO cache_entries (tenant_id, fingerprint, result, model,
                              cost_usd, input_tokens, output_tokens, created_at, expires_at)
                       SELECT tenant_id, fingerprint, result, 'sim/echo', 0.5, 10, 20,
                              finished_at, now() + interval '1 day'
                       FROM jobs WHERE id IN (:older, :recent)"""
                ),
                {"older": older, "recent": recent},
            )

            assert transitions.purge_expired(conn, 30, batch=1) == 1
            assert _purged(conn, tenant) == {oldest}
            assert transitions.purge_expired(conn, 30, batch=10) == 1
            assert transitions.purge_expired(conn, 30, batch=10) == 0
            assert _purged(conn, tenant) == {oldest, older}

            rows = conn.execute(
                text(
                    """SELECT id, request, result, metadata, error_code, error_message,
                              fingerprint, cost_usd, webhook_url
                       FROM jobs WHERE tenant_id = :tenant"""
                ),
                {"tenant": tenant},
            ).mappings()
            by_id = {row["id"]: row for row in rows}
            for job_id in (oldest, older):
                row = by_id[job_id]
                assert (row["request"], row["result"], row["metadata"]) == ({}, None, {})
                assert row["error_message"] is None and row["fingerprint"] is None
                assert row["cost_usd"] == Decimal("0.5")
                assert row["webhook_url"] == "http://127.0.0.1:9/hook"
            assert by_id[oldest]["error_code"] == "invalid_output"
            for job_id in (recent, running):
                assert by_id[job_id]["result"] == {"content": "secret answer"}
                assert by_id[job_id]["metadata"] == {"user": "alice"}

            calls = conn.execute(
                text("SELECT job_id, error_message, cost_usd FROM attempts WHERE tenant_id = :t"),
                {"t": tenant},
            ).all()
            assert {row[2] for row in calls} == {Decimal("0.5")}
            assert {row[0] for row in calls if row[1] is None} == {oldest, older}
            bodies = conn.execute(
                text("SELECT job_id, body FROM webhook_deliveries WHERE tenant_id = :t"),
                {"t": tenant},
            ).all()
            assert {row[0] for row in bodies if row[1] is None} == {oldest, older}
            assert {row[0] for row in bodies if row[1] is not None} == {recent}
            cached = conn.execute(
                text(
                    """SELECT j.id FROM cache_entries c JOIN jobs j ON j.tenant_id = c.tenant_id
                       WHERE c.tenant_id = :t AND j.fingerprint = c.fingerprint"""
                ),
                {"t": tenant},
            ).scalars()
            assert set(cached) == {recent}
            assert (
                conn.execute(
                    text("SELECT count(*) FROM cache_entries WHERE tenant_id = :t"), {"t": tenant}
                ).scalar()
                == 1
            )
        finally:
            trans.rollback()
    engine.dispose()


def _purged(conn: Connection, tenant: uuid.UUID) -> set[uuid.UUID]:
    query = text("SELECT id FROM jobs WHERE purged AND tenant_id = :t")
    return set(conn.execute(query, {"t": tenant}).scalars())
