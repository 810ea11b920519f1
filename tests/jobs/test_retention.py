"""Retention: the sweeper of a real worker purges the request and result of a job that
ended longer ago than AIJOBS_RETENTION_DAYS (30 in the test stack); the job, its
attempts, its costs and the usage report stay, and a purged job does not re-run."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import Client
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
