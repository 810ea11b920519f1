"""Fixtures: real Postgres and Redis (the machine's when AIJOBS_TEST_* name them, else
embedded ones), the schema built by Alembic, the fake provider, and a real stack."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from aijobs.settings import get_settings
from cli import embedded
from tests.fake_openai import FakeOpenAI
from tests.stack import ADMIN_TOKEN, AIJOBS, Stack, child_env
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
# Separate names let two checkouts run their suites on one server at once.
TEST_DB = os.environ.get("AIJOBS_TEST_DB_NAME", "aijobs_test")


@dataclass
class Services:
    database_url: str  # SQLAlchemy URL of the test database
    redis_url: str


def _with_database(url: str, database: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql+psycopg", database=database)
        .render_as_string(hide_password=False)
    )


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    admin_url = os.environ.get("AIJOBS_TEST_DATABASE_URL")
    redis_url = os.environ.get("AIJOBS_TEST_REDIS_URL")
    servers = None
    if not admin_url or not redis_url:
        servers = embedded.start(ROOT / ".aijobs" / "test", database="postgres")
        admin_url = admin_url or servers.database_url
        redis_url = redis_url or servers.redis_url
    try:
        yield _prepare(admin_url, redis_url)
    finally:
        if servers is not None:
            servers.stop()


def _prepare(admin_url: str, redis_url: str) -> Services:
    """A fresh test database built by `aijobs migrate`, and an empty Redis database."""
    # A configured service that does not answer fails the run; it is never skipped.
    try:
        with psycopg.connect(_libpq(admin_url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{TEST_DB}"')
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).flushdb()
    except Exception as exc:
        pytest.exit(f"test services unreachable ({admin_url}, {redis_url}): {exc}", returncode=3)
    database_url = _with_database(admin_url, TEST_DB)
    os.environ["AIJOBS_DATABASE_URL"] = database_url
    os.environ["AIJOBS_REDIS_URL"] = redis_url
    get_settings.cache_clear()
    env = child_env(database_url, redis_url)
    migrated = subprocess.run([*AIJOBS, "migrate"], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, f"aijobs migrate failed:\n{migrated.stderr}"
    return Services(database_url=database_url, redis_url=redis_url)


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stack(services: Services, fake_openai: FakeOpenAI) -> Iterator[Stack]:
    env = child_env(
        services.database_url,
        services.redis_url,
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=fake_openai.base_url,
        ANTHROPIC_API_KEY="test-key",
        ANTHROPIC_BASE_URL=fake_openai.root_url,
        # Webhooks: the test receivers listen on 127.0.0.1; quick retries, short timeout.
        AIJOBS_WEBHOOK_ALLOW_HOSTS="127.0.0.1",
        AIJOBS_WEBHOOK_RETRY_DELAYS="0.5,0.5,1",
        AIJOBS_WEBHOOK_TIMEOUT_S="2",
        AIJOBS_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    running = Stack(env)
    running.start_api()
    running.start_worker()
    yield running
    running.stop()


@pytest.fixture
def live(stack: Stack) -> Stack:
    """The shared stack, with a worker running (a test may have killed it)."""
    stack.ensure_worker()
    return stack


@pytest.fixture
def db(services: Services) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(_libpq(services.database_url), autocommit=True) as conn:
        yield conn


@dataclass
class Client:
    tenant: str
    api_key: str
    webhook_secret: str
    http: httpx.Client

    def submit(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return self.http.post("/v1/jobs", json=body, **kwargs)

    def wait(self, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            response = self.http.get(
                f"/v1/jobs/{job_id}", params={"wait": min(max(remaining, 0), 10)}
            )
            assert response.status_code == 200, response.text
            job: dict[str, Any] = response.json()
            if job["status"] in ("succeeded", "failed", "cancelled") or remaining <= 0:
                return job


@pytest.fixture
def make_client(live: Stack, services: Services) -> Iterator[Callable[..., Client]]:
    from aijobs.db import session_scope
    from aijobs.tenants.service import create_key

    made: list[httpx.Client] = []

    def make(**limits: Any) -> Client:
        name = f"t-{uuid.uuid4().hex[:10]}"
        with session_scope() as session:
            issued = create_key(session, name, **limits)
        http = httpx.Client(
            base_url=live.base_url,
            headers={"Authorization": f"Bearer {issued.api_key}"},
            timeout=60,
        )
        made.append(http)
        return Client(name, issued.api_key, issued.webhook_secret, http)

    yield make
    for http in made:
        http.close()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


@pytest.fixture
def admin(live: Stack) -> Iterator[httpx.Client]:
    """An HTTP client of the shared stack's API with the admin token."""
    with httpx.Client(
        base_url=live.base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as http:
        yield http
