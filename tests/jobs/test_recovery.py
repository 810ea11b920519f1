"""Nothing accepted is lost, nothing runs twice: killed workers (whole, or only the
supervised child), a killed last attempt, a flushed broker, redelivered messages."""

from __future__ import annotations

import signal
from typing import Any

import psutil
import psycopg
import redis

from tests.conftest import Client, Services
from tests.fake_openai import FakeOpenAI
from tests.helpers import (
    barrier,
    chat,
    job_status,
    publish_again,
    unique,
    wait_for_call,
    wait_until,
)
from tests.stack import Stack


def _status(client: Client, job_id: str) -> str:
    return str(job_status(client, job_id)["status"])


def _outcomes(db: psycopg.Connection[Any], job_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT attempt_no, model, outcome FROM attempts WHERE job_id = %s ORDER BY attempt_no",
        (job_id,),
    ).fetchall()


def test_worker_sigkilled_mid_call_finishes_after_restart(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("[sleep:2] interrupted")
    job = client.submit(chat(message)).json()
    wait_for_call(fake_openai, message)  # the call is in flight at the fake provider
    live.kill_workers(signal.SIGKILL)

    live.start_worker()
    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    outcomes = db.execute(
        "SELECT attempt_no, outcome FROM attempts WHERE job_id = %s ORDER BY attempt_no",
        (job["id"],),
    ).fetchall()
    assert outcomes == [(1, "interrupted"), (2, "succeeded")]
    assert fake_openai.count(message) == 2


def test_job_survives_a_broker_flushed_after_submit(
    live: Stack, client: Client, services: Services, fake_openai: FakeOpenAI
) -> None:
    live.kill_workers(signal.SIGTERM)
    message = unique("flushed")
    job = client.submit(chat(message)).json()
    redis.Redis.from_url(services.redis_url).flushdb()
    live.start_worker()
    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert fake_openai.count(message) == 1


def test_a_redelivered_message_does_not_run_a_finished_job(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("once")
    done = client.wait(client.submit(chat(message)).json()["id"])
    assert done["status"] == "succeeded"
    publish_again([done["id"]], times=3)
    barrier(live, client)  # the three messages have been handled
    again = client.http.get(f"/v1/jobs/{done['id']}").json()
    assert again == done
    assert fake_openai.count(message) == 1
    count = db.execute("SELECT count(*) FROM attempts WHERE job_id = %s", (done["id"],)).fetchone()
    assert count == (1,)


def test_duplicate_messages_at_once_make_one_call(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[sleep:0.5] duplicated")
    job = client.submit(chat(message)).json()
    publish_again([job["id"]], times=5)
    done = client.wait(job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    barrier(live, client)  # all six messages (the API's and ours) have been handled
    assert fake_openai.count(message) == 1
    assert job_status(client, job["id"])["attempts"] == 1


def test_a_job_queued_while_no_worker_runs_is_done_when_one_starts(
    live: Stack, client: Client
) -> None:
    live.kill_workers(signal.SIGTERM)
    job = client.submit(chat(unique(), model="sim/echo")).json()
    assert _status(client, job["id"]) == "queued"  # no worker: nothing can take it
    live.start_worker()
    assert client.wait(job["id"])["status"] == "succeeded"


def test_one_worker_command_runs_several_processes(
    live: Stack, client: Client, db: psycopg.Connection[Any]
) -> None:
    live.kill_workers(signal.SIGTERM)
    log_path = live.log_path("multi")
    offset = log_path.stat().st_size if log_path.exists() else 0
    worker = live._spawn(["worker", "--concurrency", "2", "--processes", "2"], "multi")
    try:

        def both_ready() -> bool:
            assert worker.poll() is None, "the worker exited; see test-artifacts/"
            return log_path.read_bytes()[offset:].count(b" ready.") >= 2

        wait_until(both_ready, what="two worker processes ready", interval_s=0.2)
        children = psutil.Process(worker.pid).children()
        assert len(children) == 2
        ids = [client.submit(chat(unique(f"[sleep:1] spread {i}"))).json()["id"] for i in range(6)]
        assert all(client.wait(job_id)["status"] == "succeeded" for job_id in ids)
        owners = db.execute(
            "SELECT count(DISTINCT split_part(worker, ':', 2)) FROM attempts"
            " WHERE job_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchone()
        assert owners == (2,)  # both processes took calls
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert not any(child.is_running() and child.status() != "zombie" for child in children)
    finally:
        if worker.poll() is None:
            worker.kill()


def _started_by(db: psycopg.Connection[Any], job_id: str) -> int | None:
    """The pid of the worker process whose call of the job is in flight."""
    row = db.execute(
        "SELECT split_part(worker, ':', 2)::int FROM attempts"
        " WHERE job_id = %s AND outcome = 'started'",
        (job_id,),
    ).fetchone()
    return int(row[0]) if row else None


def test_a_child_worker_killed_alone_is_restarted_and_the_job_finishes(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    """The OOM killer takes the Celery worker, not `aijobs worker` (its supervisor): the
    supervisor starts a new child, and the call lost with the old one is made again."""
    message = unique("[sleep:2] oom")
    job = client.submit(chat(message)).json()
    wait_for_call(fake_openai, message)
    pid = wait_until(lambda: _started_by(db, job["id"]), what="the attempt row of the call")
    (supervisor,) = [w for w in live.workers if pid in (c.pid for c in _children(w.pid))]
    psutil.Process(pid).send_signal(signal.SIGKILL)  # the child alone

    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert [row[2] for row in _outcomes(db, job["id"])] == ["interrupted", "succeeded"]
    assert fake_openai.count(message) == 2
    assert supervisor.poll() is None  # the supervisor lived on
    (child,) = wait_until(
        lambda: [c for c in _children(supervisor.pid) if c.pid != pid],
        what="the supervisor's new child",
    )
    second = db.execute(
        "SELECT split_part(worker, ':', 2)::int FROM attempts WHERE job_id = %s AND attempt_no = 2",
        (job["id"],),
    ).fetchone()
    if len(live.workers) == 1:  # only the new child could take it
        assert second == (child.pid,)


def _children(pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(pid).children() if c.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_last_attempt_fails_internal(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("[sleep:2] last try")
    job = client.submit(chat(message, max_attempts=1)).json()
    wait_for_call(fake_openai, message)
    live.kill_workers(signal.SIGKILL)
    live.start_worker()

    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "internal"
    assert done["error"]["retryable"] is False
    assert done["attempts"] == 1
    assert _outcomes(db, job["id"]) == [(1, "openai/gpt-4o-mini", "interrupted")]
    assert fake_openai.count(message) == 1  # no call beyond max_attempts


def test_a_killed_last_attempt_falls_back_to_the_next_model(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("[sleep:2] last try, then the fallback")
    body = chat(message, max_attempts=1, fallbacks=["openai/gpt-4.1-mini"])
    job = client.submit(body).json()
    wait_for_call(fake_openai, message)
    live.kill_workers(signal.SIGKILL)
    live.start_worker()

    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert _outcomes(db, job["id"]) == [
        (1, "openai/gpt-4o-mini", "interrupted"),
        (2, "openai/gpt-4.1-mini", "succeeded"),
    ]
    assert fake_openai.count_model(message, "gpt-4o-mini") == 1
