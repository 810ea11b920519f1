"""Budgets hold whatever the client sends and however many calls run at once: the worker
sends the output cap it reserved, the input bound counts what aijobs adds, calls that
only wait for other calls' reservations wait (they do not fail), a budget set mid-day
counts that day's ledger, and the periods come from the database's clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from aijobs.billing import budget
from tests.conftest import Client, Services
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique, wait_for_call, wait_until
from tests.stack import Stack


def _counters(db: psycopg.Connection[Any], tenant: str) -> tuple[Any, ...]:
    row = db.execute(
        "SELECT c.day_spent, c.day_reserved, c.month_spent, c.month_reserved, c.day"
        " FROM budget_counters c JOIN tenants t ON t.id = c.tenant_id WHERE t.name = %s",
        (tenant,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def _ledger(db: psycopg.Connection[Any], job_ids: list[str]) -> tuple[int, Decimal]:
    row = db.execute(
        "SELECT count(*), coalesce(sum(cost_usd), 0) FROM attempts WHERE job_id = ANY(%s::uuid[])",
        (job_ids,),
    ).fetchone()
    assert row is not None
    return int(row[0]), Decimal(row[1])


@pytest.mark.parametrize(
    ("model", "params", "limit", "sent"),
    [
        # No max_tokens: the model's cap (16,384) is sent; 40,000 tokens would cost 0.024.
        ("openai/gpt-4o-mini", {}, "0.012", {"max_tokens": 16384}),
        # A max_tokens above the model's cap is clamped to it.
        ("openai/gpt-4o-mini", {"max_tokens": 100000}, "0.012", {"max_tokens": 16384}),
        # o-series and gpt-5 models take max_completion_tokens.
        ("openai/o4-mini", {}, "0.5", {"max_completion_tokens": 100000}),
        ("anthropic/claude-3-5-haiku-latest", {"max_tokens": 100000}, "0.04", {"max_tokens": 8192}),
    ],
)
def test_the_reserved_cap_is_sent_whatever_the_client_sends(
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
    model: str,
    params: dict[str, int],
    limit: str,
    sent: dict[str, int],
) -> None:
    client = make_client(daily_budget=Decimal(limit))
    message = unique("[long:40000] a long answer")
    job = client.submit(chat(message, model=model, params=params)).json()
    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert fake_openai.caps_seen(message) == [sent]
    cap = next(iter(sent.values()))
    assert done["usage"]["output_tokens"] == min(cap, 40000)
    if cap < 40000:
        assert done["result"]["finish_reason"] in ("length", "max_tokens")
    calls, spent = _ledger(db, [job["id"]])
    assert calls == 1
    assert spent == Decimal(done["cost_usd"]) <= Decimal(limit)
    day_spent, day_reserved, *_ = _counters(db, client.tenant)
    assert day_spent == spent and day_reserved == 0


def test_ten_calls_that_fit_only_one_after_another_all_run(
    live: Stack,
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
) -> None:
    """Each reserves about 0.0098 USD (16,384 output tokens) and costs about 0.00002: a
    0.03 budget holds three reservations at once, and every call in the end."""
    live.ensure_workers(2)
    limit = Decimal("0.03")
    client = make_client(daily_budget=limit)
    tag = unique("[sleep:0.5] waits its turn")
    bodies = [chat(f"{tag} {i}") for i in range(10)]
    with ThreadPoolExecutor(10) as pool:
        ids = [r.json()["id"] for r in pool.map(client.submit, bodies)]
    done = [client.wait(job_id, timeout_s=90) for job_id in ids]
    assert [job["status"] for job in done] == ["succeeded"] * 10, done
    assert all(job["attempts"] == 1 for job in done)  # no attempt counted while waiting
    calls, spent = _ledger(db, ids)
    assert calls == 10 == sum(fake_openai.count(body["messages"][0]["content"]) for body in bodies)
    assert spent <= limit
    day_spent, day_reserved, *_ = _counters(db, client.tenant)
    assert day_spent == spent and day_reserved == 0
    assert fake_openai.max_in_flight["gpt-4o-mini"] >= 2  # they did run side by side


def test_a_call_that_cannot_fit_even_alone_is_not_made(
    make_client: Callable[..., Client], fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    """The bound counts what aijobs adds: here Anthropic's tool for structured output,
    whose schema is far larger than the message (the fake counts a token a byte)."""
    client = make_client(daily_budget=Decimal("0.005"))
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer", "description": "the answer " * 2000}},
    }
    structured = unique('[bytes] [reply:{"a": 1}] structured')
    plain = unique("plain")
    jobs = [
        client.submit(
            chat(
                structured,
                model="anthropic/claude-3-5-haiku-latest",
                params={"max_tokens": 10},
                response_schema=schema,
            )
        ).json(),
        client.submit(chat(plain)).json(),  # 16,384 output tokens: 0.0098 > 0.005
    ]
    for job in jobs:
        done = client.wait(job["id"], timeout_s=60)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "budget_exceeded"
        assert done["error"]["retryable"] is False
        assert done["attempts"] == 0 and done["cost_usd"] == "0"
    assert fake_openai.count(structured) == 0 and fake_openai.count(plain) == 0
    assert _ledger(db, [job["id"] for job in jobs]) == (0, Decimal(0))
    assert _counters(db, client.tenant)[:2] == (0, 0)


def test_a_budget_set_mid_day_counts_the_days_spend(
    make_client: Callable[..., Client],
    admin: httpx.Client,
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
) -> None:
    client = make_client()  # no budget yet
    first = client.wait(client.submit(chat(unique("[long:10000] spent"))).json()["id"])
    assert first["status"] == "succeeded"
    spent = Decimal(first["cost_usd"])
    assert spent > Decimal("0.006")
    # A call in flight when the budget is set (it held no reservation) counts too.
    flying = unique("[sleep:2] in flight")
    second = client.submit(chat(flying, params={"max_tokens": 50})).json()
    wait_for_call(fake_openai, flying)

    patched = admin.patch(f"/admin/tenants/{client.tenant}", json={"daily_budget_usd": "0.012"})
    assert patched.status_code == 200, patched.text
    daily = patched.json()["budget"]["daily"]
    assert Decimal(daily["spent"]) == spent
    assert Decimal(daily["reserved"]) > 0  # the call in flight now holds its reservation

    second_done = client.wait(second["id"], timeout_s=60)
    assert second_done["status"] == "succeeded"
    spent += Decimal(second_done["cost_usd"])
    usage = client.http.get("/v1/usage").json()["budget"]["daily"]
    assert (Decimal(usage["spent"]), Decimal(usage["reserved"])) == (spent, Decimal(0))

    # 0.0098 more (16,384 output tokens) cannot fit beside what the day already spent.
    over = unique("over")
    refused = client.wait(client.submit(chat(over)).json()["id"], timeout_s=60)
    assert refused["status"] == "failed" and refused["error"]["code"] == "budget_exceeded"
    assert fake_openai.count(over) == 0
    assert _counters(db, client.tenant)[:2] == (spent, 0)


def test_keys_create_with_a_budget_counts_the_days_spend(
    make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    """`aijobs keys create --tenant T --daily-budget USD` for a tenant that spent today."""
    from aijobs.db import session_scope
    from aijobs.tenants.service import create_key

    client = make_client()
    done = client.wait(client.submit(chat(unique("[long:5000] spent"))).json()["id"])
    assert done["status"] == "succeeded"
    with session_scope() as session:
        create_key(session, client.tenant, daily_budget=Decimal("1"), monthly_budget=Decimal("2"))
    day_spent, day_reserved, month_spent, month_reserved, _ = _counters(db, client.tenant)
    assert day_spent == month_spent == Decimal(done["cost_usd"]) > 0
    assert day_reserved == month_reserved == 0


class _Shifted(datetime):
    """This process's clock, 400 days ahead of the database's."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + timedelta(days=400)


def test_budget_periods_come_from_the_database_clock(
    services: Services, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker (or the API) whose clock disagrees with the database's counts the
    database's day: here a day whose budget is spent stays spent."""
    from aijobs.db import get_engine, session_scope
    from aijobs.jobs import submission
    from aijobs.jobs.schemas import JobRequest
    from aijobs.tenants.service import create_key
    from worker import runner

    name = f"t-{uuid.uuid4().hex[:10]}"
    with session_scope() as session:
        create_key(session, name, daily_budget=Decimal("0.05"))
        tenant = session.execute(
            text("SELECT id FROM tenants WHERE name = :name"), {"name": name}
        ).scalar_one()
        request = JobRequest.model_validate(chat(unique("clock"), cache=False))
        job_id = submission.submit(session, tenant, request).row["id"]
    # Spent 0.045 today (by the database): a call of 0.0098 cannot fit. The job is not
    # published, and no sweeper publishes it (it looks freshly published).
    db.execute("UPDATE budget_counters SET day_spent = 0.045 WHERE tenant_id = %s", (tenant,))
    db.execute("UPDATE jobs SET enqueued_at = now() + interval '1 hour' WHERE id = %s", (job_id,))
    monkeypatch.setattr(budget, "datetime", _Shifted, raising=False)

    with get_engine().connect() as conn:
        daily, _ = budget.state(conn, tenant)
    assert daily.spent == Decimal("0.045")
    assert runner._claim(job_id, "test-clock") == "failed"
    job = db.execute("SELECT status, error_code FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert job == ("failed", "budget_exceeded")
    today = db.execute("SELECT (now() AT TIME ZONE 'utc')::date").fetchone()
    assert today is not None
    assert _counters(db, name)[4] == today[0]


def test_a_call_waiting_for_reservations_runs_when_they_settle(
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
) -> None:
    """It waits queued, with no attempt counted and no call made, and runs once the
    call in flight has settled."""
    client = make_client(daily_budget=Decimal("0.015"))
    held = unique("[sleep:3] holds the room")
    first = client.submit(chat(held)).json()
    wait_for_call(fake_openai, held)
    waiting = unique("waits")
    second = client.submit(chat(waiting)).json()

    def parked() -> bool:
        row = db.execute(
            "SELECT status, attempts, next_attempt_at > now() + interval '1 year',"
            " started_at IS NULL FROM jobs WHERE id = %s",
            (second["id"],),
        ).fetchone()
        return row == ("queued", 0, True, True)

    wait_until(parked, what="the second job waiting for budget")
    assert fake_openai.count(waiting) == 0
    done = [client.wait(job["id"], timeout_s=60) for job in (first, second)]
    assert [job["status"] for job in done] == ["succeeded", "succeeded"], done
    assert fake_openai.count(waiting) == 1
