"""A settle that meets a restarted database still lands: the answer of a call made
before Postgres went down is recorded once it is back, within the lease, and the job
ends with one call made and one recorded. On its own embedded servers, since it
restarts Postgres."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.chaos_support import TERMINAL, ChaosServers
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique, wait_for_call, wait_until
from tests.stack import AIJOBS, Stack, child_env


@dataclass
class Restartable:
    servers: ChaosServers
    fake: FakeOpenAI
    stack: Stack
    http: httpx.Client


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    servers = ChaosServers(tmp_path_factory.mktemp("settle"), database="aijobs_settle")
    fake = FakeOpenAI().start()
    # A lease longer than the outage: the test is about the settle, not the lapse.
    env = child_env(
        servers.database_url,
        servers.redis_url,
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=fake.base_url,
        AIJOBS_LEASE_S="30",
    )
    stack = Stack(env, name="settle")
    try:
        migrated = subprocess.run([*AIJOBS, "migrate"], env=env, capture_output=True, text=True)
        assert migrated.returncode == 0, migrated.stderr
        created = subprocess.run(
            [*AIJOBS, "keys", "create", "--tenant", "settle"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout.strip().splitlines()[-1])["api_key"]
        stack.start_api()
        stack.start_worker()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=stack.base_url, headers=headers, timeout=30) as http:
            yield Restartable(servers, fake, stack, http)
    finally:
        stack.stop()
        fake.stop()
        servers.stop()


def _job(http: httpx.Client, job_id: str) -> dict[str, Any] | None:
    try:
        response = http.get(f"/v1/jobs/{job_id}")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_a_settle_after_a_database_restart_records_the_call_once(
    restartable: Restartable,
) -> None:
    message = unique("[sleep:2] answered while the database is down")
    job = restartable.http.post("/v1/jobs", json=chat(message)).json()["id"]
    wait_for_call(restartable.fake, message)
    restartable.servers.stop_postgres()
    time.sleep(3)  # the outage: the answer arrives meanwhile, and its settle fails
    restartable.servers.start_postgres()

    def ended() -> dict[str, Any] | None:
        seen = _job(restartable.http, job)
        return seen if seen is not None and seen["status"] in TERMINAL else None

    done = wait_until(ended, what="the job to end after the restart")
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert restartable.fake.count(message) == 1
    with psycopg.connect(restartable.servers.database_url) as conn:
        rows = conn.execute("SELECT outcome FROM attempts WHERE job_id = %s", (job,)).fetchall()
        held = conn.execute("SELECT count(*) FROM attempts WHERE outcome = 'started'").fetchone()
    assert rows == [("succeeded",)]
    assert held == (0,)
