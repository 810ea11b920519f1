"""Budgets hold under concurrency, reservations never leak, rpm is shared by every API
process, and a per-model cap keeps bursts queued."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
from sqlalchemy import create_engine, text

from aijobs.billing import budget
from aijobs.jobs import submission, transitions
from aijobs.jobs.schemas import JobRequest
from tests.conftest import Client, Services
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, spend_today, unique, wait_for_call
from tests.stack import Stack

MAX_TOKENS = 50


def _reply(words: int) -> str:
    return " ".join(["word"] * words)


def _reservation(message: str) -> Decimal:
    request = JobRequest.model_validate(chat(message, params={"max_tokens": MAX_TOKENS}))
    return budget.max_call_cost(request, "openai/gpt-4o-mini")


def _counters(db: psycopg.Connection[Any], tenant: str) -> tuple[Decimal, Decimal]:
    row = db.execute(
        "SELECT c.day_spent, c.day_reserved FROM budget_counters c"
        " JOIN tenants t ON t.id = c.tenant_id WHERE t.name = %s",
        (tenant,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_budget_holds_under_concurrency(
    live: Stack,
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
) -> None:
    live.ensure_workers(2)
    tag = unique("budget")
    # Replies as long as max_tokens, so a call costs about what it reserves.
    messages = [f"[reply:{_reply(MAX_TOKENS - 1)}] {tag} {i:02d}" for i in range(40)]
    limit = _reservation(messages[0]) * Decimal("5.5")
    client = make_client(daily_budget=limit)
    body = [chat(m, params={"max_tokens": MAX_TOKENS}) for m in messages]
    with ThreadPoolExecutor(10) as pool:
        ids = [r.json()["id"] for r in pool.map(client.submit, body)]
    done = [client.wait(job_id, timeout_s=60) for job_id in ids]

    outcomes = {(job["status"], (job["error"] or {}).get("code")) for job in done}
    assert outcomes <= {("succeeded", None), ("failed", "budget_exceeded")}, outcomes
    refused = [job for job in done if job["status"] == "failed"]
    assert refused, "a budget for five calls let forty through"
    assert all(job["attempts"] == 0 and job["cost_usd"] == "0" for job in refused)
    assert all(job["error"]["retryable"] is False for job in refused)
    succeeded = [job for job in done if job["status"] == "succeeded"]
    # At least the five calls the budget fits at their maximum; more when calls settle
    # below their reservation and free room for later ones.
    assert 5 <= len(succeeded) < 40

    calls = sum(fake_openai.count(m) for m in messages)
    recorded = db.execute(
        "SELECT count(*), sum(cost_usd) FROM attempts WHERE job_id = ANY(%s::uuid[])", (ids,)
    ).fetchone()
    assert recorded is not None
    assert recorded[0] == calls == len(succeeded)
    assert recorded[1] <= limit
    assert sum(Decimal(job["cost_usd"]) for job in done) == recorded[1]
    spent, reserved = _counters(db, client.tenant)
    assert spent == recorded[1]
    assert reserved == 0

    usage = client.http.get("/v1/usage").json()
    daily = usage["budget"]["daily"]
    assert Decimal(daily["limit"]) == limit
    assert Decimal(daily["spent"]) == recorded[1] <= limit
    assert Decimal(daily["reserved"]) == 0
    assert Decimal(daily["remaining"]) == limit - recorded[1]
    assert Decimal(usage["total"]["cost_usd"]) == recorded[1]
    assert usage["total"]["calls"] == calls


def test_over_budget_is_402_at_submit(
    make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    client = make_client(daily_budget=Decimal("0.01"))
    spend_today(db, client.tenant, "0.01")
    response = client.submit(chat("hi", model="sim/echo"))
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "budget_exceeded"
    count = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (client.tenant,),
    ).fetchone()
    assert count == (0,)


def test_a_killed_workers_reservation_is_released(
    live: Stack,
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
) -> None:
    client = make_client(daily_budget=Decimal("1"))
    message = unique("[sleep:2] held")
    job = client.submit(chat(message, params={"max_tokens": MAX_TOKENS})).json()
    wait_for_call(fake_openai, message)  # claimed (reserved), and the call is in flight
    reservation = _counters(db, client.tenant)[1]
    assert reservation == _reservation(message)
    live.kill_workers(signal.SIGKILL)
    live.start_worker()
    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded"
    rows = db.execute(
        "SELECT outcome, cost_usd, cost_estimated FROM attempts WHERE job_id = %s"
        " ORDER BY attempt_no",
        (job["id"],),
    ).fetchall()
    assert rows[0] == ("interrupted", reservation, True)  # charged at most what it could cost
    assert rows[1][0] == "succeeded" and rows[1][2] is False
    spent, reserved = _counters(db, client.tenant)
    assert reserved == 0
    assert spent == rows[0][1] + rows[1][1] == Decimal(done["cost_usd"])


def test_the_budget_period_rolls_over_at_utc_midnight(services: Services) -> None:
    """Counters left on the database's yesterday: its spend no longer counts today. In
    one transaction no worker can see."""
    engine = create_engine(services.database_url)
    body = chat("roll over", params={"max_tokens": MAX_TOKENS}, cache=False)
    request = JobRequest.model_validate(body)
    reservation = budget.max_call_cost(request, "openai/gpt-4o-mini")
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            today, month = conn.execute(text(f"SELECT {budget.TODAY}, {budget.MONTH}")).one()
            yesterday = today - timedelta(days=1)
            tenant = uuid.uuid4()
            conn.execute(
                text(
                    "INSERT INTO tenants (id, name, webhook_secret, daily_budget_usd)"
                    " VALUES (:id, :name, 'whsec_x', :limit)"
                ),
                {"id": tenant, "name": tenant.hex, "limit": reservation * Decimal("1.5")},
            )
            # Yesterday's budget is spent.
            conn.execute(
                text("INSERT INTO budget_counters VALUES (:id, :day, :spent, 0, :month, 0, 0)"),
                {
                    "id": tenant,
                    "day": yesterday,
                    "spent": reservation * Decimal("1.5"),
                    "month": yesterday.replace(day=1),
                },
            )

            def claim() -> Any:
                from sqlalchemy.orm import Session

                job = submission.submit(Session(bind=conn), tenant, request).row
                claimed = transitions.claim(conn, job["id"], "test", 30)
                if isinstance(claimed, transitions.Claimed):
                    call = transitions.CallRecord(
                        outcome="succeeded", latency_ms=1, cost_usd=reservation
                    )
                    transitions.succeed(conn, claimed, "test", call, {}, cache_ttl_s=60)
                return claimed

            assert isinstance(claim(), transitions.Claimed)  # a new day, a new budget
            refused = claim()
            assert isinstance(refused, transitions.Refused)
            assert refused.code == "budget_exceeded"
            counters = conn.execute(
                text(
                    "SELECT day, day_spent, month, day_reserved FROM budget_counters"
                    " WHERE tenant_id = :id"
                ),
                {"id": tenant},
            ).one()
            assert counters == (today, reservation, month, 0)
        finally:
            trans.rollback()
    engine.dispose()


def test_rpm_is_shared_by_two_api_processes(
    live: Stack, make_client: Callable[..., Client]
) -> None:
    second = Stack(live.env, name="second-api")
    second.start_api()
    try:
        client = make_client(rpm=4)
        codes = []
        for i in range(10):
            base = live.base_url if i % 2 == 0 else second.base_url
            response = httpx.post(
                base + "/v1/jobs",
                json=chat(unique(), model="sim/echo"),
                headers={"Authorization": f"Bearer {client.api_key}"},
            )
            codes.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["code"] == "rate_limited"
                assert int(response.headers["retry-after"]) >= 1
        assert codes.count(202) == 4
        assert codes.count(429) == 6
    finally:
        second.stop()


def test_the_in_flight_cap_queues_a_burst(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    live.ensure_workers(2)
    tag = unique("[sleep:0.6] capped")
    body = [chat(f"{tag} {i}", model="openai/gpt-4.1-nano") for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        ids = [r.json()["id"] for r in pool.map(client.submit, body)]
    done = [client.wait(job_id, timeout_s=60) for job_id in ids]
    assert all(job["status"] == "succeeded" for job in done), done
    assert all(job["attempts"] == 1 for job in done)
    assert fake_openai.max_in_flight["gpt-4.1-nano"] == 2


def test_usage_reports_spend_tokens_and_savings(client: Client) -> None:
    message = unique("counted")
    first = client.wait(client.submit(chat(message)).json()["id"])
    hit = client.submit(chat(message)).json()
    assert hit["cache_hit"] is True
    by_model = client.http.get("/v1/usage", params={"group_by": "model"}).json()
    assert by_model["group_by"] == "model"
    [line] = by_model["data"]
    assert line["model"] == "openai/gpt-4o-mini"
    assert Decimal(line["cost_usd"]) == Decimal(first["cost_usd"])
    assert line["input_tokens"] == first["usage"]["input_tokens"]
    assert line["calls"] == 1 and line["cache_hits"] == 1
    assert Decimal(line["saved_usd"]) == Decimal(first["cost_usd"])
    assert by_model["budget"]["daily"]["limit"] is None
    bad = client.http.get("/v1/usage", params={"start": "2026-02-01", "end": "2026-01-01"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
