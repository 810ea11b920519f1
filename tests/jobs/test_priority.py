"""A job's priority (SPEC's "Priority and fair share"): interactive by default for
POST /v1/jobs, batch by default for a batch's jobs, set per request or per line,
shown in the job object, stored; never part of the dedup fingerprint."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.conftest import Client
from tests.helpers import chat, unique


def _priority(db: psycopg.Connection[Any], job_id: str) -> str:
    row = db.execute("SELECT priority FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_job_is_interactive_unless_it_says_batch(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    plain = client.submit(chat(unique("plain"), model="sim/echo"))
    assert plain.status_code == 202, plain.text
    assert plain.json()["priority"] == "interactive"
    assert _priority(db, plain.json()["id"]) == "interactive"

    low = client.submit(chat(unique("low"), model="sim/echo", priority="batch"))
    assert low.status_code == 202, low.text
    assert low.json()["priority"] == "batch"
    assert _priority(db, low.json()["id"]) == "batch"
    assert client.wait(low.json()["id"])["priority"] == "batch"


def test_an_unknown_priority_is_refused_and_writes_nothing(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    content = unique("urgent")
    response = client.submit(chat(content, model="sim/echo", priority="urgent"))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"
    assert "priority" in response.json()["detail"]
    found = db.execute("SELECT count(*) FROM jobs WHERE request::text LIKE %s", (f"%{content}%",))
    assert found.fetchone() == (0,)


def test_priority_is_not_part_of_the_dedup_fingerprint(client: Client) -> None:
    content = unique("same answer")
    first = client.wait(client.submit(chat(content, model="sim/echo")).json()["id"])
    assert first["status"] == "succeeded" and not first["cache_hit"]
    again = client.submit(chat(content, model="sim/echo", priority="batch")).json()
    again = client.wait(again["id"])
    assert again["cache_hit"] is True
    assert again["priority"] == "batch"
    assert again["result"] == first["result"]


def test_a_batch_job_is_batch_unless_its_line_says_interactive(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    lines = [
        {"custom_id": "default", **chat(unique("b1"), model="sim/echo")},
        {"custom_id": "urgent", **chat(unique("b2"), model="sim/echo", priority="interactive")},
    ]
    response = client.http.post("/v1/batches", json={"jobs": lines})
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    rows = db.execute(
        "SELECT custom_id, priority FROM jobs WHERE batch_id = %s ORDER BY batch_index",
        (batch_id,),
    ).fetchall()
    assert rows == [("default", "batch"), ("urgent", "interactive")]
    jobs = client.http.get("/v1/jobs", params={"limit": 10}).json()["data"]
    shown = {job["custom_id"]: job["priority"] for job in jobs if job["batch_id"] == batch_id}
    assert shown == {"default": "batch", "urgent": "interactive"}


def test_a_batch_line_with_an_unknown_priority_refuses_the_batch(client: Client) -> None:
    lines = [
        {"custom_id": "ok", **chat(unique("fine"), model="sim/echo")},
        {"custom_id": "bad", **chat(unique("bad"), model="sim/echo", priority="soon")},
    ]
    response = client.http.post("/v1/batches", json={"jobs": lines})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert [(e["index"], e["custom_id"]) for e in problem["errors"]] == [(1, "bad")]
    assert "priority" in problem["errors"][0]["detail"]
    assert client.http.get("/v1/batches").json()["data"] == []


def test_an_idempotency_key_covers_the_priority(client: Client) -> None:
    body = chat(unique("keyed"), model="sim/echo")
    key = {"Idempotency-Key": unique("key")}
    first = client.submit(body, headers=key)
    assert first.status_code == 202, first.text
    assert client.submit(body, headers=key).json()["id"] == first.json()["id"]
    other = client.submit({**body, "priority": "batch"}, headers=key)
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_conflict"
