"""Every way a provider call can go wrong ends in the right place, with its history."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, gpt4o_mini_cost, job_status, unique, wait_for_call, wait_until
from tests.stack import Stack

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _attempts(db: psycopg.Connection[Any], job_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT attempt_no, model, outcome, error_code, cost_usd FROM attempts"
        " WHERE job_id = %s ORDER BY attempt_no",
        (job_id,),
    ).fetchall()


def test_429_honours_retry_after(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[429:1] busy")
    done = client.wait(client.submit(chat(message)).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    first, second = fake_openai.call_times[message]
    assert second - first >= 1.0


def test_a_junk_retry_after_falls_back_to_the_backoff(
    client: Client, fake_openai: FakeOpenAI
) -> None:
    """`Retry-After: soon` is neither seconds nor a date: the mapping used to raise on
    it and leave the job running for good."""
    message = unique("[429:soon] busy")
    done = client.wait(client.submit(chat(message)).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert fake_openai.count(message) == 2


def test_a_hang_beyond_timeout_is_provider_timeout(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("[sleep:3] hang")
    body = chat(message, timeout_s=0.5, max_attempts=1)
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "provider_timeout"
    assert done["error"]["retryable"] is True
    assert _attempts(db, done["id"])[0][2:4] == ("failed", "provider_timeout")
    # The call's own time (the worker's clock around it, not the job's queueing): cut
    # at the timeout, not held until the fake answered 3 s after the call arrived.
    row = db.execute("SELECT latency_ms FROM attempts WHERE job_id = %s", (done["id"],)).fetchone()
    assert row is not None and 400 <= row[0] < 2500, row


def test_attempts_exhausted(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[fail:502x9] down")
    done = client.wait(client.submit(chat(message, max_attempts=2)).json()["id"])
    assert done["status"] == "failed"
    assert done["error"] == {
        "code": "provider_error",
        "message": done["error"]["message"],
        "retryable": True,
    }
    assert done["attempts"] == 2
    assert fake_openai.count(message) == 2


def test_invalid_json_is_retried_then_invalid_output(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("[reply:not json at all] give json")
    done = client.wait(
        client.submit(chat(message, response_schema=SCHEMA, max_attempts=2)).json()["id"]
    )
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_output"
    assert done["result"]["content"] == "not json at all"  # the last raw output, for debugging
    assert done["result"]["parsed"] is None
    assert fake_openai.count(message) == 2
    rows = _attempts(db, done["id"])
    assert [row[3] for row in rows] == ["invalid_output", "invalid_output"]
    # Invalid output was still a paid call.
    assert all(row[4] > 0 for row in rows)
    assert Decimal(done["cost_usd"]) == sum(row[4] for row in rows)


def test_schema_mismatch_is_invalid_output(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique('[reply:{"n": "seven"}] count')
    done = client.wait(
        client.submit(chat(message, response_schema=SCHEMA, max_attempts=1)).json()["id"]
    )
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_output"
    assert "n" in done["error"]["message"]


def test_fallback_to_a_second_model_after_retryable_failures(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("[down:gpt-4o-mini] important")
    body = chat(message, max_attempts=2, fallbacks=["openai/gpt-4.1-mini"])
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["model"] == "openai/gpt-4o-mini"
    assert done["answered_by"] == "openai/gpt-4.1-mini"
    assert done["attempts"] == 3
    assert fake_openai.count_model(message, "gpt-4o-mini") == 2
    assert fake_openai.count_model(message, "gpt-4.1-mini") == 1
    rows = _attempts(db, done["id"])
    assert [(row[1], row[2]) for row in rows] == [
        ("openai/gpt-4o-mini", "failed"),
        ("openai/gpt-4o-mini", "failed"),
        ("openai/gpt-4.1-mini", "succeeded"),
    ]
    tokens_in, tokens_out = len(message.split()), len(f"echo: {message}".split())
    # gpt-4.1-mini's own price: 0.40 in, 1.60 out per 1M tokens.
    expected = (tokens_in * Decimal("0.40") + tokens_out * Decimal("1.60")) / 1_000_000
    assert Decimal(done["cost_usd"]) == expected == rows[2][4]


def test_the_simulated_outage_falls_back_on_the_embedded_default(client: Client) -> None:
    """sim/down always fails transiently: the README's fallback example, no key needed."""
    body = {
        "model": "sim/down",
        "fallbacks": ["sim/echo"],
        "max_attempts": 2,
        "messages": [{"role": "user", "content": unique("hello")}],
    }
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["answered_by"] == "sim/echo"
    assert done["attempts"] == 3


def test_no_fallback_after_a_permanent_error(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[status:401] unauthorized")
    body = chat(message, fallbacks=["openai/gpt-4.1-mini"])
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 1
    assert fake_openai.count(message) == 1


def test_anthropic_provider(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("bonjour")
    body = {
        "model": "anthropic/claude-haiku-4-5",
        "messages": [
            {"role": "system", "content": "be kind"},
            {"role": "user", "content": message},
        ],
    }
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["content"] == f"echo: {message}"
    tokens_in = len(message.split()) + 2
    tokens_out = len(f"echo: {message}".split())
    assert done["usage"] == {"input_tokens": tokens_in, "output_tokens": tokens_out}
    expected = (tokens_in * Decimal(1) + tokens_out * Decimal(5)) / 1_000_000
    assert Decimal(done["cost_usd"]) == expected
    assert fake_openai.count_model(message, "claude-haiku-4-5") == 1


def test_anthropic_structured_output_through_a_tool(client: Client) -> None:
    message = unique('[reply:{"n": 7}] count')
    body = chat(message, model="anthropic/claude-haiku-4-5", response_schema=SCHEMA)
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["parsed"] == {"n": 7}


def test_anthropic_errors_map_like_openai(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[fail:529x1] overloaded")
    done = client.wait(
        client.submit(chat(message, model="anthropic/claude-haiku-4-5")).json()["id"]
    )
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2


def test_worker_restart_while_a_job_waits_for_its_retry(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[429:3] later")
    job = client.submit(chat(message, max_attempts=2)).json()
    wait_for_call(fake_openai, message)
    # The 429 settled: the job waits in Postgres for its retry (due in 3 s).

    def waiting_for_retry() -> bool:
        seen = job_status(client, job["id"])
        return bool(seen["status"] == "queued" and seen["attempts"] == 1)

    wait_until(waiting_for_retry, what="the job queued for its retry")
    live.kill_workers(signal.SIGKILL)
    live.start_worker()
    done = client.wait(job["id"], timeout_s=30)
    assert done["status"] == "succeeded", done
    assert fake_openai.count(message) == 2


def test_storm_every_job_terminal_and_every_call_recorded_once(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    tag = unique("storm")
    messages = [f"[storm] {tag} {i}" for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda m: client.submit(chat(m)), messages))
    ids = [r.json()["id"] for r in responses]
    deadline = time.monotonic() + 120
    while True:
        row = db.execute(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[])"
            " AND status NOT IN ('succeeded', 'failed')",
            (ids,),
        ).fetchone()
        if row == (0,):
            break
        assert time.monotonic() < deadline, f"{row} jobs not terminal"
        time.sleep(0.5)
    jobs = db.execute(
        "SELECT id, attempts, max_attempts, cost_usd, status FROM jobs WHERE id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()
    # A provider 429 sends the job back to waiting without using an attempt: the calls
    # that used one are the others.
    used = dict(
        db.execute(
            "SELECT job_id, count(*) FILTER (WHERE error_code IS DISTINCT FROM"
            " 'provider_rate_limited') FROM attempts WHERE job_id = ANY(%s::uuid[])"
            " GROUP BY job_id",
            (ids,),
        ).fetchall()
    )
    assert all(used[job_id] <= max_attempts for job_id, _, max_attempts, _, _ in jobs)
    recorded = db.execute(
        "SELECT count(*), coalesce(sum(cost_usd), 0) FROM attempts WHERE job_id = ANY(%s::uuid[])",
        (ids,),
    ).fetchone()
    assert recorded is not None
    provider_calls = sum(fake_openai.count(m) for m in messages)
    assert recorded[0] == provider_calls == sum(job[1] for job in jobs)
    assert recorded[1] == sum(job[3] for job in jobs)
    succeeded = [job for job in jobs if job[4] == "succeeded"]
    assert len(succeeded) > 150
    assert sum(job[3] for job in succeeded) == sum(
        gpt4o_mini_cost(len(m.split()), len(f"echo: {m}".split()))
        for m, job_id in zip(messages, ids, strict=True)
        if any(str(job[0]) == job_id for job in succeeded)
    )
