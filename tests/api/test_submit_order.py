"""The submit route's order: a replay is answered before anything that could refuse a new
job (budget, rate limit), and the rpm counts submissions only, never reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import psycopg

from aijobs.db import session_scope
from aijobs.jobs import submission
from aijobs.jobs.schemas import JobRequest
from tests.conftest import Client
from tests.helpers import chat, unique
from tests.stack import ADMIN_TOKEN, Stack


def _tenant_id(db: psycopg.Connection[Any], name: str) -> uuid.UUID:
    row = db.execute("SELECT id FROM tenants WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _jobs_of(db: psycopg.Connection[Any], name: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_replay_after_the_budget_went_to_zero_gets_its_job(
    live: Stack, make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    client = make_client(daily_budget=Decimal("1"))
    body = chat(unique("replay me"), model="sim/echo")
    key = {"Idempotency-Key": unique("key")}
    first = client.submit(body, headers=key)
    assert first.status_code == 202, first.text

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    patched = httpx.patch(
        f"{live.base_url}/admin/tenants/{client.tenant}",
        json={"daily_budget_usd": "0"},
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    # The budget holds for a new job...
    refused = client.submit(chat(unique("a new job"), model="sim/echo"))
    assert refused.status_code == 402 and refused.json()["code"] == "budget_exceeded"
    # ...but the replay of an accepted key always gets its job back.
    replayed = client.submit(body, headers=key)
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["id"] == first.json()["id"]
    assert replayed.headers["location"] == f"/v1/jobs/{first.json()['id']}"
    # The same key with another body is still a conflict, budget or not.
    other = client.submit(chat(unique("another body"), model="sim/echo"), headers=key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_conflict"
    assert _jobs_of(db, client.tenant) == 1


def test_a_replay_after_the_rate_limit_was_hit_gets_its_job(
    make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    client = make_client(rpm=2)
    body = chat(unique("replay me"), model="sim/echo")
    key = {"Idempotency-Key": unique("key")}
    first = client.submit(body, headers=key)
    assert first.status_code == 202, first.text
    assert client.submit(chat(unique("second"), model="sim/echo")).status_code == 202
    limited = client.submit(chat(unique("third"), model="sim/echo"))
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"

    replayed = client.submit(body, headers=key)
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["id"] == first.json()["id"]
    assert _jobs_of(db, client.tenant) == 2


def test_polling_does_not_use_up_the_submission_rate(
    make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    client = make_client(rpm=3)
    # A job made without the API, so that no submission is spent before the reads.
    request = JobRequest.model_validate(chat(unique("polled"), model="sim/echo"))
    with session_scope() as session:
        row = submission.submit(session, _tenant_id(db, client.tenant), request).row
    job = f"/v1/jobs/{row['id']}"

    reads = [client.http.get(job) for _ in range(7)]
    reads.append(client.http.get(job, params={"wait": 0.2}))  # a long-poll
    reads.append(client.http.get("/v1/jobs"))
    reads.append(client.http.get("/v1/usage"))
    assert [r.status_code for r in reads] == [200] * 10

    submits = [
        client.submit(chat(unique(f"after polling {i}"), model="sim/echo")) for i in range(3)
    ]
    assert [r.status_code for r in submits] == [202] * 3
    fourth = client.submit(chat(unique("one too many"), model="sim/echo"))
    assert fourth.status_code == 429
    assert fourth.headers["content-type"] == "application/problem+json"
    assert fourth.json()["code"] == "rate_limited"
    assert int(fourth.headers["retry-after"]) >= 1
    # Reads still answer while submissions wait.
    assert client.http.get(job).status_code == 200
