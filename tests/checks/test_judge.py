"""Judge checks: a second model scores the output; its call is an attempt of the job
(kind judge), reserved under the tenant's budget before it is made and settled after,
its cost in the job's. The fake judges by a [score:X] in the output it is sent."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg

from tests.checks.test_output_checks import _attempts
from tests.conftest import Client
from tests.fake_openai import JUDGE_SYSTEM, FakeOpenAI
from tests.helpers import chat, unique
from tests.stack import Stack


def _judge(**extra: Any) -> dict[str, Any]:
    return {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "Is it polite?", **extra}


def _judge_bodies(fake: FakeOpenAI, output: str) -> list[dict[str, Any]]:
    return [
        body
        for body in list(fake.chat_bodies)
        if body["messages"][0]["content"].startswith(JUDGE_SYSTEM)
        and body["messages"][-1]["content"].endswith(output)
    ]


def test_a_judge_is_a_budgeted_attempt_of_the_job(
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    live: Stack,
    db: psycopg.Connection[Any],
) -> None:
    client = make_client(daily_budget=Decimal("5"))
    plain = client.wait(client.submit(chat(unique("plain [score:0.9]"))).json()["id"])
    message = unique("judged [score:0.9]")
    response = client.submit(chat(message, checks=[_judge(threshold=0.7)]))
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["content"] == f"echo: {message}"  # the output, not the judgement
    assert job["attempts"] == 2
    assert job["checks"] == [
        {
            "type": "judge",
            "passed": True,
            "detail": "the judge scored 0.9, at least the threshold 0.7:"
            " scored 0.9 by the fake judge",
        }
    ]
    call, judged = _attempts(live, job["id"])
    assert (call["kind"], judged["kind"]) == ("call", "judge")
    assert judged["model"] == "openai/gpt-4o-mini" and judged["outcome"] == "succeeded"
    assert judged["checks"] == job["checks"] and call["checks"] is None
    assert Decimal(judged["cost_usd"]) > 0
    assert Decimal(job["cost_usd"]) == Decimal(call["cost_usd"]) + Decimal(judged["cost_usd"])
    assert Decimal(job["cost_usd"]) > Decimal(plain["cost_usd"])

    # The judge was sent the rubric and the output, asked for JSON.
    [body] = _judge_bodies(fake_openai, f"echo: {message}")
    assert "Rubric:\nIs it polite?" in body["messages"][1]["content"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["max_tokens"] == 300

    # Reserved before it was made, held against the budget, settled after: the day's
    # spend is every call's cost, nothing is left reserved.
    rows = db.execute(
        "SELECT kind, reserved_usd, budget_held FROM attempts WHERE job_id = %s"
        " ORDER BY attempt_no",
        (job["id"],),
    ).fetchall()
    assert [(kind, held) for kind, _, held in rows] == [("call", True), ("judge", True)]
    assert rows[1][1] > 0
    spent, reserved = db.execute(
        "SELECT c.day_spent, c.day_reserved FROM budget_counters c"
        " JOIN tenants t ON t.id = c.tenant_id WHERE t.name = %s",
        (client.tenant,),
    ).fetchone() or (None, None)
    assert spent == Decimal(job["cost_usd"]) + Decimal(plain["cost_usd"])
    assert reserved == 0
    usage = client.http.get("/v1/usage").json()
    assert Decimal(str(usage["budget"]["daily"]["spent"])) == spent

    # The same request again is a cache hit that saved the call and its judge.
    again = client.submit(chat(message, checks=[_judge(threshold=0.7)])).json()
    assert again["cache_hit"] is True and again["cost_usd"] == "0"
    saved = db.execute("SELECT saved_usd FROM jobs WHERE id = %s", (again["id"],)).fetchone()
    assert saved is not None and saved[0] == Decimal(job["cost_usd"])


def test_a_low_score_fails_the_check(client: Client, live: Stack) -> None:
    message = unique("rude [score:0.2]")
    job = client.wait(client.submit(chat(message, checks=[_judge(on_fail="fail")])).json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "check_failed", job
    assert job["result"]["content"] == f"echo: {message}"
    [check] = job["checks"]
    assert check["passed"] is False and "below the threshold 0.5" in check["detail"]
    assert [a["kind"] for a in _attempts(live, job["id"])] == ["call", "judge"]


def test_a_judge_answer_that_does_not_parse_is_a_failed_check(client: Client) -> None:
    job = client.wait(
        client.submit(chat(unique("odd [score:x]"), checks=[_judge(on_fail="fail")])).json()["id"]
    )
    assert job["status"] == "failed" and job["error"]["code"] == "check_failed", job
    assert job["checks"][0]["detail"] == (
        "the judge gave no score: its answer is not JSON {score, reason}"
    )


def test_a_judge_retry_judges_the_new_output(client: Client, fake_openai: FakeOpenAI) -> None:
    # The first output carries a low score; the retry's output is the echo of our
    # instruction (no score directive: the fake judge answers 0.5, which passes).
    message = unique("first [score:0.1]")
    job = client.wait(client.submit(chat(message, checks=[_judge()])).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 4  # call, judge, call, judge
    [retry] = [b for b in fake_openai.received_with(message) if len(b["messages"]) == 3]
    assert "judge: the judge scored 0.1" in retry["messages"][2]["content"]


def test_a_judge_that_cannot_fit_the_budget_is_not_called(
    make_client: Callable[..., Client], fake_openai: FakeOpenAI, live: Stack
) -> None:
    # The call fits (gpt-4o-mini, 10 output tokens); the judge on gpt-4o (300 output
    # tokens at $10 per million) cannot.
    client = make_client(daily_budget=Decimal("0.002"))
    message = unique("cheap")
    body = chat(
        message,
        params={"max_tokens": 10},
        checks=[_judge(model="openai/gpt-4o")],
    )
    job = client.wait(client.submit(body).json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "budget_exceeded", job
    assert job["result"]["content"] == f"echo: {message}"
    assert [a["kind"] for a in _attempts(live, job["id"])] == ["call"]
    assert _judge_bodies(fake_openai, f"echo: {message}") == []
