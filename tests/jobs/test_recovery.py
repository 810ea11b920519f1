"""Nothing accepted is lost, nothing runs twice: killed workers, a flushed broker,
redelivered messages."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
import redis
from celery import Celery

from aijobs.broker import QUEUE, RUN_JOB_TASK, celery_config
from aijobs.settings import get_settings
from tests.conftest import Client, Services
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique
from tests.stack import Stack


def _status(client: Client, job_id: str) -> str:
    return str(client.http.get(f"/v1/jobs/{job_id}").json()["status"])


def _wait_status(client: Client, job_id: str, status: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while _status(client, job_id) != status:
        assert time.monotonic() < deadline, f"job never reached {status}"
        time.sleep(0.05)


def _publisher() -> Celery:
    app = Celery("test-publisher")
    app.config_from_object(celery_config(get_settings()))
    return app


def test_worker_sigkilled_mid_call_finishes_after_restart(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("[sleep:2] interrupted")
    job = client.submit(chat(message)).json()
    _wait_status(client, job["id"], "running")
    time.sleep(0.3)  # the call is in flight at the fake provider
    live.kill_workers(signal.SIGKILL)

    restarted = time.monotonic()
    live.start_worker()
    done = client.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert time.monotonic() - restarted < 60
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
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("once")
    done = client.wait(client.submit(chat(message)).json()["id"])
    assert done["status"] == "succeeded"
    publisher = _publisher()
    for _ in range(3):
        publisher.send_task(RUN_JOB_TASK, args=[done["id"]], queue=QUEUE)
    time.sleep(2)
    again = client.http.get(f"/v1/jobs/{done['id']}").json()
    assert again == done
    assert fake_openai.count(message) == 1
    count = db.execute("SELECT count(*) FROM attempts WHERE job_id = %s", (done["id"],)).fetchone()
    assert count == (1,)


def test_duplicate_messages_at_once_make_one_call(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[sleep:0.5] duplicated")
    job = client.submit(chat(message)).json()
    publisher = _publisher()
    for _ in range(5):
        publisher.send_task(RUN_JOB_TASK, args=[job["id"]], queue=QUEUE)
    done = client.wait(job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    time.sleep(1)
    assert fake_openai.count(message) == 1


def test_a_job_queued_while_no_worker_runs_is_done_when_one_starts(
    live: Stack, client: Client
) -> None:
    live.kill_workers(signal.SIGTERM)
    job = client.submit(chat(unique(), model="sim/echo")).json()
    time.sleep(1)
    assert _status(client, job["id"]) == "queued"
    live.start_worker()
    assert client.wait(job["id"])["status"] == "succeeded"


def test_one_worker_command_runs_several_processes(
    live: Stack, client: Client, db: psycopg.Connection[Any]
) -> None:
    import psutil

    live.kill_workers(signal.SIGTERM)
    log_path = live.log_path("multi")
    offset = log_path.stat().st_size if log_path.exists() else 0
    worker = live._spawn(["worker", "--concurrency", "2", "--processes", "2"], "multi")
    try:
        deadline = time.monotonic() + 40
        while log_path.read_bytes()[offset:].count(b" ready.") < 2:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
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
