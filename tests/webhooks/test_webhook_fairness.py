"""One tenant's webhook receivers cannot slow another tenant (SPEC invariant 10):
deliveries never take job slots nor block the consumer, an attempt ends at
AIJOBS_WEBHOOK_TIMEOUT_S however slowly the receiver answers, and a tenant has at most
AIJOBS_WEBHOOK_TENANT_INFLIGHT deliveries in flight across all workers."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import psycopg

from aijobs.settings import Settings
from tests.conftest import Client, Services
from tests.helpers import chat, job_status, unique, wait_until
from tests.stack import Stack
from tests.webhook_receiver import Receiver, Step
from worker import webhook_caps

# The shared stack runs with the defaults but for AIJOBS_WEBHOOK_TIMEOUT_S=2 (conftest).
TIMEOUT_S = 2.0
TENANT_CAP = Settings.model_fields["webhook_tenant_inflight"].default


def _submit(client: Client, url: str | None = None) -> str:
    body = chat(unique("fair"), model="sim/echo", cache=False)
    if url is not None:
        body["webhook_url"] = url
    response = client.submit(body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def _wait_delivered(client: Client, job_id: str) -> None:
    def webhook() -> dict[str, Any]:
        hook: dict[str, Any] = job_status(client, job_id)["webhook"]
        return hook

    wait_until(lambda: webhook()["status"] == "delivered", what=lambda: f"delivered: {webhook()}")


def _attempts(db: psycopg.Connection[Any], url: str) -> list[tuple[Any, ...]]:
    """Logged attempts to this url: (attempt_no, status_code, error, latency_ms)."""
    return db.execute(
        "SELECT a.attempt_no, a.status_code, a.error, a.latency_ms FROM webhook_attempts a"
        " JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.url = %s",
        (url,),
    ).fetchall()


def _open(db: psycopg.Connection[Any], url: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE url = %s"
        " AND status IN ('pending', 'sending')",
        (url,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _published(db: psycopg.Connection[Any], url: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE url = %s AND enqueued_at IS NOT NULL",
        (url,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _delivered(client: Client, job_id: str) -> bool:
    return bool(job_status(client, job_id)["webhook"]["status"] == "delivered")


def _end_deliveries(receiver: Receiver, db: psycopg.Connection[Any], url: str) -> None:
    """The receiver answers 410 Gone from now on: the deliveries end at their next try,
    so the next tests do not share the workers with them."""
    receiver.script(httpx.URL(url).path, Step(410))
    wait_until(lambda: _open(db, url) == 0, what="the tarpit's deliveries to end")


def test_a_tenants_tarpit_receiver_delays_no_other_tenant(
    make_client: Callable[..., Client], receiver: Receiver, db: psycopg.Connection[Any]
) -> None:
    """Tenant A's 24 webhooks go to a receiver that answers one byte a second; tenant B's
    five jobs and their webhooks still take about as long as with nobody else around."""
    a, b = make_client(), make_client()
    tarpit = receiver.path(Step(200, trickle_s=1.0))
    try:
        for _ in range(24):
            _submit(a, tarpit)
        receiver.wait_for(tarpit, 4, timeout_s=60)  # the tarpit holds A's deliveries
        hook = receiver.path()
        started = time.monotonic()
        jobs = [_submit(b, hook) for _ in range(5)]
        done = [b.wait(job_id, timeout_s=90) for job_id in jobs]
        jobs_s = time.monotonic() - started
        print(f"\ntenant B's 5 jobs beside tenant A's 24 webhooks to a tarpit: {jobs_s:.1f} s")
        assert [job["status"] for job in done] == ["succeeded"] * 5
        assert jobs_s < 10, f"tenant B's jobs took {jobs_s:.1f} s"
        receiver.wait_for(hook, 5, timeout_s=90)
        hooks_s = time.monotonic() - started
        print(f"tenant B's 5 webhooks delivered {hooks_s:.1f} s after the submits")
        assert hooks_s < 10, f"tenant B's webhooks took {hooks_s:.1f} s"
        # The receiver has the requests; each delivery's row is marked just after the
        # 2xx reaches the worker.
        for job_id in jobs:
            wait_until(
                partial(_delivered, b, job_id),
                what=f"job {job_id}'s webhook to be marked delivered",
                timeout_s=10,
            )

        # A's attempts are cut at the timeout, recorded failed, and retried per the schedule.
        wait_until(
            lambda: any(row[0] >= 2 for row in _attempts(db, tarpit)),
            what=lambda: f"a retried attempt to the tarpit: {_attempts(db, tarpit)}",
        )
        for _, status_code, error, latency_ms in _attempts(db, tarpit):
            assert status_code is None and error.startswith(f"timeout after {TIMEOUT_S:g}s")
            assert TIMEOUT_S * 1000 * 0.95 <= latency_ms < TIMEOUT_S * 1000 + 1500, latency_ms
    finally:
        _end_deliveries(receiver, db, tarpit)


def test_a_tenants_deliveries_in_flight_stay_within_its_cap(
    live: Stack, client: Client, receiver: Receiver
) -> None:
    """With AIJOBS_WEBHOOK_TENANT_INFLIGHT at its default, two workers together never
    have more of one tenant's deliveries at the receiver at once."""
    live.ensure_workers(2)
    slow = receiver.path(Step(200, sleep_s=1.5))
    jobs = [_submit(client, slow) for _ in range(12)]
    for job_id in jobs:
        _wait_delivered(client, job_id)
    most = receiver.most_at_once(slow)
    print(f"\nthe tenant's deliveries at the receiver at once: at most {most} (cap {TENANT_CAP})")
    assert 2 <= most <= TENANT_CAP
    assert len({r.headers["webhook-id"] for r in receiver.requests(slow)}) == 12


def test_deliveries_beyond_the_webhook_threads_wait_in_postgres(
    live: Stack,
    make_client: Callable[..., Client],
    receiver: Receiver,
    db: psycopg.Connection[Any],
) -> None:
    """A worker with two webhook threads (and no tenant cap) busy with slow receivers:
    handing it more deliveries does not block its consumer, so another tenant's jobs
    run at once; the deliveries it had no thread for wait in Postgres and are all sent."""
    live.kill_workers(signal.SIGTERM)
    env = {
        "AIJOBS_WEBHOOK_THREADS": "2",
        "AIJOBS_WEBHOOK_TENANT_INFLIGHT": "0",
        "AIJOBS_WEBHOOK_TIMEOUT_S": "15",  # the receiver below is slow, not late
    }
    live.start_worker(env=env)
    try:
        a, b = make_client(), make_client()
        slow = receiver.path(Step(200, sleep_s=6))
        hooked = [_submit(a, slow) for _ in range(6)]
        receiver.wait_for(slow, 2, timeout_s=60)  # both webhook threads are busy
        # ... and every delivery has been published: the worker has them all in hand.
        wait_until(lambda: _published(db, slow) == 6, what="the deliveries published")
        started = time.monotonic()
        done = [b.wait(job_id, timeout_s=90) for job_id in [_submit(b) for _ in range(5)]]
        jobs_s = time.monotonic() - started
        print(f"\ntenant B's 5 jobs beside a worker's busy webhook threads: {jobs_s:.1f} s")
        assert [job["status"] for job in done] == ["succeeded"] * 5
        assert jobs_s < 5, f"tenant B's jobs took {jobs_s:.1f} s"
        for job_id in hooked:
            _wait_delivered(a, job_id)
        assert len({r.headers["webhook-id"] for r in receiver.requests(slow)}) == 6
        assert max(row[0] for row in _attempts(db, slow)) == 1  # deferring is no attempt
    finally:
        live.kill_workers(signal.SIGTERM)
        live.start_worker()


def test_a_cap_slot_of_a_dead_worker_expires(services: Services) -> None:
    """A slot is held at most hold_s: a worker that dies holding one frees it."""
    tenant = uuid.uuid4()
    held = [webhook_caps.acquire(tenant, 2, hold_s=1) for _ in range(2)]
    assert all(held)
    assert webhook_caps.acquire(tenant, 2, hold_s=1) is None  # at the cap
    again = wait_until(lambda: webhook_caps.acquire(tenant, 2, hold_s=1), timeout_s=10)
    webhook_caps.release(tenant, again)
    other = webhook_caps.acquire(uuid.uuid4(), 2, hold_s=1)  # another tenant's own cap
    assert other is not None
