"""Every claimed attempt ends, whatever the provider answers and whatever happens to the
worker around it: odd answers, a trickling body, a poison pattern beside a bystander,
SIGTERM with work handed over but unclaimed, and a stale answer after a re-run."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import psutil
import psycopg
import redis

from aijobs.broker import QUEUE
from tests.conftest import Client, Services
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique, wait_for_call, wait_until
from tests.stack import ADMIN_TOKEN, Stack


def _attempts(db: psycopg.Connection[Any], job_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT attempt_no, outcome, error_code, latency_ms, cost_usd,"
        " split_part(worker, ':', 2)::int FROM attempts WHERE job_id = %s ORDER BY attempt_no",
        (job_id,),
    ).fetchall()


def test_a_nul_in_the_answer_is_stored_and_the_job_ends(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    done = client.wait(client.submit(chat(unique("[nul] zero byte"))).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["content"] == "before\ufffdafter"
    assert [row[1] for row in _attempts(db, done["id"])] == ["succeeded"]


def test_an_answer_the_sdk_refuses_is_a_provider_error(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    """A 200 whose choice has no message: the SDK's parse fails after the claim."""
    done = client.wait(client.submit(chat(unique("[broken] odd"), max_attempts=2)).json()["id"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "provider_error"
    assert [row[1:3] for row in _attempts(db, done["id"])] == [
        ("failed", "provider_error"),
        ("failed", "provider_error"),
    ]


def test_a_trickling_answer_is_cut_at_timeout_s(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    """Each read of a trickled body is quick; the whole answer would take a minute."""
    body = chat(unique("[trickle:1] slow body"), timeout_s=2, max_attempts=1)
    done = client.wait(client.submit(body).json()["id"], timeout_s=60)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "provider_timeout"
    ((_, outcome, code, latency_ms, _, _),) = _attempts(db, done["id"])
    assert (outcome, code) == ("failed", "provider_timeout")
    assert 1500 <= latency_ms < 6000, latency_ms  # the call's own clock: cut at 2 s


def test_a_poison_pattern_does_not_stall_a_bystander(client: Client) -> None:
    """`^(a+)+$` against 34 a's and a '!' takes Python's re hours; it holds the GIL, so
    every call of the worker process would stall behind it."""
    poison = '{"x": "' + "a" * 34 + '!"}'
    schema = {
        "type": "object",
        "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}},
        "required": ["x"],
    }
    body = chat(unique(f"[reply:{poison}] poison"), response_schema=schema, max_attempts=1)
    bad = client.submit(body).json()["id"]
    started = time.monotonic()
    bystander = client.submit(chat(unique("bystander"), model="sim/echo")).json()["id"]
    assert client.wait(bystander, timeout_s=30)["status"] == "succeeded"
    assert time.monotonic() - started < 10
    done = client.wait(bad, timeout_s=30)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "invalid_output"


def _children(pid: int) -> set[int]:
    return {c.pid for c in psutil.Process(pid).children() if c.status() != psutil.STATUS_ZOMBIE}


def test_sigterm_hands_unclaimed_work_back(
    live: Stack,
    client: Client,
    fake_openai: FakeOpenAI,
    services: Services,
    db: psycopg.Connection[Any],
) -> None:
    """With its one slot busy, the worker has taken the next message but not claimed its
    job. SIGTERM: the call in flight finishes there; the waiting job goes to another
    worker instead of being claimed during the drain."""
    live.kill_workers(signal.SIGTERM)
    first = live.start_worker(concurrency=1)
    first_pids = _children(first.pid)
    busy_message = unique("[sleep:3] in flight")
    busy = client.submit(chat(busy_message)).json()["id"]
    wait_for_call(fake_openai, busy_message)
    waiting_message = unique("handed over")
    waiting = client.submit(chat(waiting_message)).json()["id"]
    broker = redis.Redis.from_url(services.redis_url)
    wait_until(lambda: broker.llen(QUEUE) == 0, what="the worker to take the waiting message")
    assert fake_openai.count(waiting_message) == 0

    first.send_signal(signal.SIGTERM)
    live.start_worker()
    assert client.wait(busy, timeout_s=60)["status"] == "succeeded"
    done = client.wait(waiting, timeout_s=60)
    assert done["status"] == "succeeded", done
    assert first.wait(timeout=60) == 0
    ((_, outcome, _, _, _, pid),) = _attempts(db, waiting)
    assert outcome == "succeeded"
    assert pid not in first_pids  # the stopping worker did not claim it
    assert fake_openai.count(waiting_message) == 1


def test_a_stale_answer_never_ends_a_newer_run(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    """Cancelled mid-call and re-run at once: the first call's late answer keeps its cost
    but cannot end the second run (the settle is fenced by the attempt number)."""
    message = unique("[sleep:2] [numbered] fenced")
    job = client.submit(chat(message)).json()["id"]
    wait_for_call(fake_openai, message)
    assert client.http.post(f"/v1/jobs/{job}/cancel").status_code == 200
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rerun = httpx.post(f"{live.base_url}/admin/jobs/{job}/rerun", headers=admin, timeout=30)
    assert rerun.status_code == 202, rerun.text
    wait_for_call(fake_openai, message, calls=2)

    done = client.wait(job, timeout_s=60)
    assert done["status"] == "succeeded", done
    assert done["result"]["content"].startswith("call 2: "), done["result"]
    rows = _attempts(db, job)
    assert [row[:2] for row in rows] == [(1, "succeeded"), (2, "succeeded")]
    assert done["attempts"] == 2
    total = db.execute("SELECT cost_usd FROM jobs WHERE id = %s", (job,)).fetchone()
    assert total is not None and total[0] == rows[0][4] + rows[1][4]  # both calls paid
