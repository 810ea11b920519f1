"""A judge check's call that fits the tenant's budget alone but not beside the calls in
flight waits, like a job's own call: the job goes back to queued with the judge pending
(the output kept, no attempt counted), is woken when the reservations settle, and then
makes only the judge's call. One that no longer fits even alone fails budget_exceeded,
keeping the output."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from typing import Any

import psycopg

from tests.checks.test_judge import _judge, _judge_bodies
from tests.checks.test_output_checks import _attempts
from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique, wait_for_call, wait_until
from tests.stack import Stack


def _reservations(held: str, message: str) -> tuple[Decimal, Decimal, Decimal]:
    """What the call in flight, the judged job's call and its judge reserve (the
    worker's own functions)."""
    from aijobs.billing.budget import max_call_cost
    from aijobs.checks import judge
    from aijobs.checks.schemas import JudgeCheck
    from aijobs.jobs.schemas import JobRequest

    other = JobRequest.model_validate(chat(held))
    own = JobRequest.model_validate(chat(message, params={"max_tokens": 10}))
    check = JudgeCheck.model_validate(_judge())
    judged = judge.judge_request(check, f"echo: {message}", own.timeout_s)
    return (
        max_call_cost(other, other.model),
        max_call_cost(own, own.model),
        judge.reservation(judged),
    )


def _pending(db: psycopg.Connection[Any], job_id: str) -> tuple[Any, ...] | None:
    return db.execute(
        "SELECT status, attempts, judge_pending IS NOT NULL,"
        " next_attempt_at > now() + interval '1 year' FROM jobs WHERE id = %s",
        (job_id,),
    ).fetchone()


def _counters(db: psycopg.Connection[Any], tenant: str) -> tuple[Decimal, Decimal]:
    row = db.execute(
        "SELECT c.day_spent, c.day_reserved FROM budget_counters c"
        " JOIN tenants t ON t.id = c.tenant_id WHERE t.name = %s",
        (tenant,),
    ).fetchone()
    assert row is not None
    return Decimal(row[0]), Decimal(row[1])


def _setup(
    make_client: Callable[..., Client], fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> tuple[Client, Decimal, dict[str, Any], dict[str, Any], str]:
    """A call in flight holding most of the budget, and a judged job whose call fits
    beside it but whose judge does not (it fits alone): that job parked, judge pending."""
    held = unique("[sleep:4] holds the room")
    message = unique("judged [score:0.9]")
    in_flight, own, judged = _reservations(held, message)
    assert judged > 2 * own  # the judge's room is what is missing, not the call's
    limit = (in_flight + own + judged / 2).quantize(Decimal("1e-10"), rounding=ROUND_DOWN)
    client = make_client(daily_budget=limit)
    first = client.submit(chat(held)).json()
    wait_for_call(fake_openai, held)
    response = client.submit(chat(message, params={"max_tokens": 10}, checks=[_judge()]))
    assert response.status_code == 202, response.text
    second = response.json()
    wait_until(
        lambda: _pending(db, second["id"]) == ("queued", 1, True, True),
        what=lambda: f"the judged job parked with its judge pending: {_pending(db, second['id'])}",
    )
    assert fake_openai.count(message) == 1  # its own call was made once
    assert _judge_bodies(fake_openai, f"echo: {message}") == []  # the judge waits
    return client, limit, first, second, message


def test_a_judge_that_fits_alone_waits_for_the_calls_in_flight(
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    live: Stack,
    db: psycopg.Connection[Any],
) -> None:
    client, limit, first, second, message = _setup(make_client, fake_openai, db)

    done = [client.wait(job["id"], timeout_s=60) for job in (first, second)]
    assert [job["status"] for job in done] == ["succeeded", "succeeded"], done
    judged = done[1]
    assert judged["result"]["content"] == f"echo: {message}"
    assert judged["attempts"] == 2  # its call and its judge's: no attempt for the wait
    assert [check["passed"] for check in judged["checks"]] == [True]
    assert judged["checks"][0]["type"] == "judge"
    # The job's model was not called again for the judge: one call, one judge call.
    assert fake_openai.count(message) == 1
    assert len(_judge_bodies(fake_openai, f"echo: {message}")) == 1
    attempts = _attempts(live, judged["id"])
    assert [(a["kind"], a["outcome"]) for a in attempts] == [
        ("call", "succeeded"),
        ("judge", "succeeded"),
    ]
    assert attempts[1]["model"] == "openai/gpt-4o-mini"
    assert Decimal(judged["cost_usd"]) == sum(Decimal(a["cost_usd"]) for a in attempts)
    spent, reserved = _counters(db, client.tenant)
    assert reserved == 0
    assert spent == Decimal(done[0]["cost_usd"]) + Decimal(judged["cost_usd"])
    assert spent <= limit
    pending = db.execute("SELECT judge_pending FROM jobs WHERE id = %s", (judged["id"],)).fetchone()
    assert pending == (None,)


def test_a_pending_judge_that_no_longer_fits_alone_fails_keeping_the_output(
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    live: Stack,
    db: psycopg.Connection[Any],
) -> None:
    client, _, first, second, message = _setup(make_client, fake_openai, db)
    # While it waits, the budget is cut to what the job's call spent: the judge can
    # never fit now, so its wake fails it instead of calling.
    db.execute(
        "UPDATE tenants SET daily_budget_usd = (SELECT cost_usd FROM jobs WHERE id = %s)"
        " WHERE name = %s",
        (second["id"], client.tenant),
    )
    done = client.wait(second["id"], timeout_s=60)
    assert done["status"] == "failed" and done["error"]["code"] == "budget_exceeded", done
    assert "judge call cannot fit" in done["error"]["message"]
    assert done["result"]["content"] == f"echo: {message}"  # the output is kept
    assert done["attempts"] == 1
    assert fake_openai.count(message) == 1
    assert _judge_bodies(fake_openai, f"echo: {message}") == []
    assert [a["kind"] for a in _attempts(live, second["id"])] == ["call"]
    assert client.wait(first["id"], timeout_s=60)["status"] == "succeeded"
    assert _counters(db, client.tenant)[1] == 0
