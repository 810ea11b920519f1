"""The queue by tenant where operators look: GET /admin/queue, the /metrics gauges, the
admin page's queue view (in headless Chromium), and the tenants page's weight and max
in-flight form. The jobs are written straight into Postgres (tests/admin/queue_jobs.py),
the calls in flight into the fair queue's Redis set, so every number is known."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine

from aijobs.scheduling import fair_queue
from tests.admin import queue_jobs
from tests.admin.test_admin_page import _log_in, browser, page  # noqa: F401 (fixtures)
from tests.conftest import Services
from tests.helpers import unique
from tests.stack import ADMIN_TOKEN, ARTIFACTS, Stack

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

WEIGHT_KEY = fair_queue.PREFIX + fair_queue.WEIGHT  # the fair queue's hashes
CAP_KEY = fair_queue.PREFIX + fair_queue.CAP


@dataclass
class Seeded:
    name: str
    id: uuid.UUID
    idle_name: str


@pytest.fixture
def engine(services: Services) -> Iterator[Engine]:
    made = create_engine(services.database_url)
    yield made
    made.dispose()


@pytest.fixture
def broker(services: Services) -> redis.Redis:
    return redis.Redis.from_url(services.redis_url, decode_responses=True)


@pytest.fixture
def seeded(engine: Engine, broker: redis.Redis) -> Iterator[Seeded]:
    """A tenant (weight 3, cap 4) with 3 + 2 queued and 2 + 1 running leaders, a
    follower and finished jobs that do not count, 2 calls in flight in Redis; and an
    idle tenant."""
    name, idle_name = unique("queue"), unique("idle")
    with engine.begin() as conn:
        tenant = queue_jobs.tenant(conn, name, weight=3, cap=4)
        idle = queue_jobs.tenant(conn, idle_name)
        (leader,) = queue_jobs.jobs(conn, tenant, "queued", age_s=90)
        queue_jobs.jobs(conn, tenant, "queued", count=2, age_s=10)
        queue_jobs.jobs(conn, tenant, "queued", "batch", count=2, age_s=4000)
        queue_jobs.jobs(conn, tenant, "running", count=2)
        queue_jobs.jobs(conn, tenant, "running", "batch")
        queue_jobs.jobs(conn, tenant, "queued", count=2, leader=leader, age_s=9000)
        queue_jobs.jobs(conn, tenant, "succeeded", "batch", count=3)
    until = time.time() + 300
    running = fair_queue.running_key(str(tenant))
    broker.zadd(running, {str(uuid.uuid4()): until, str(uuid.uuid4()): until})
    broker.zadd(running, {str(uuid.uuid4()): time.time() - 5})  # a lapsed lease: not counted
    yield Seeded(name, tenant, idle_name)
    broker.delete(running)
    with engine.begin() as conn:
        queue_jobs.forget(conn, [tenant, idle])


def test_admin_queue_json(live: Stack, seeded: Seeded) -> None:
    response = httpx.get(live.base_url + "/admin/queue", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["priorities"] == ["interactive", "batch"]
    rows = {row["tenant"]: row for row in body["data"]}
    row = rows[seeded.name]
    assert row["tenant_id"] == str(seeded.id)
    assert (row["weight"], row["max_inflight"], row["in_flight_now"]) == (3, 4, 2)
    assert (row["queued"], row["running"]) == (5, 3)
    interactive, batch = row["by_priority"]["interactive"], row["by_priority"]["batch"]
    assert (interactive["queued"], interactive["running"]) == (3, 2)
    assert (batch["queued"], batch["running"]) == (2, 1)
    assert 90 <= interactive["oldest_queued_s"] < 200
    assert 4000 <= batch["oldest_queued_s"] < 4100
    idle = rows[seeded.idle_name]
    assert (idle["queued"], idle["running"], idle["in_flight_now"]) == (0, 0, 0)
    assert idle["by_priority"]["batch"] == {"queued": 0, "running": 0, "oldest_queued_s": None}
    # Busiest first: a tenant with jobs queued comes before one with none.
    names = [r["tenant"] for r in body["data"]]
    assert names.index(seeded.name) < names.index(seeded.idle_name)
    assert httpx.get(live.base_url + "/admin/queue").status_code == 401


def _gauge(metrics: str, name: str, tenant: str, priority: str) -> float:
    pattern = rf'^{name}{{priority="{priority}",tenant="{re.escape(tenant)}"}} (\S+)$'
    match = re.search(pattern, metrics, re.MULTILINE)
    assert match is not None, f"{name} for {tenant}/{priority} not in /metrics"
    return float(match.group(1))


def test_metrics_show_the_queue_by_tenant_and_priority(live: Stack, seeded: Seeded) -> None:
    metrics = httpx.get(live.base_url + "/metrics").text
    expected = {
        ("aijobs_jobs_queued", "interactive"): 3,
        ("aijobs_jobs_queued", "batch"): 2,
        ("aijobs_jobs_in_flight", "interactive"): 2,
        ("aijobs_jobs_in_flight", "batch"): 1,
    }
    for (name, priority), value in expected.items():
        assert _gauge(metrics, name, seeded.name, priority) == value
        assert _gauge(metrics, name, seeded.idle_name, priority) == 0
    depth = re.search(r"^aijobs_queue_depth (\S+)$", metrics, re.MULTILINE)
    assert depth is not None and float(depth.group(1)) >= 5
    oldest = re.search(r"^aijobs_queue_oldest_age_seconds (\S+)$", metrics, re.MULTILINE)
    assert oldest is not None and float(oldest.group(1)) >= 4000


def test_queue_page(live: Stack, seeded: Seeded, page: Any) -> None:  # noqa: F811
    _log_in(page)
    page.click("header a[href='/admin/ui/queue']")
    assert page.url.endswith("/admin/ui/queue")
    row = page.locator(f"#queue tr.tenant[data-tenant='{seeded.name}']")
    cells = {
        cls: row.locator(f"td.{cls}").inner_text()
        for cls in (
            "weight",
            "max-inflight",
            "in-flight-now",
            "interactive-queued",
            "interactive-running",
            "interactive-oldest",
            "batch-queued",
            "batch-running",
            "batch-oldest",
        )
    }
    assert cells["weight"] == "3" and cells["max-inflight"] == "4"
    assert cells["in-flight-now"] == "2"
    assert (cells["interactive-queued"], cells["interactive-running"]) == ("3", "2")
    assert (cells["batch-queued"], cells["batch-running"]) == ("2", "1")
    assert re.fullmatch(r"1m \d+s", cells["interactive-oldest"]), cells
    assert re.fullmatch(r"1h 6m|1h 7m", cells["batch-oldest"]), cells
    idle = page.locator(f"#queue tr.tenant[data-tenant='{seeded.idle_name}']")
    assert idle.locator("td.max-inflight").inner_text() == "none"
    assert idle.locator("td.batch-oldest").inner_text() == ""
    page.screenshot(path=str(ARTIFACTS / "admin-page-queue.png"), full_page=True)


def test_tenants_page_edits_weight_and_max_inflight(
    live: Stack,
    page: Any,  # noqa: F811
    broker: redis.Redis,
) -> None:
    name = unique("share-page")
    created = httpx.post(live.base_url + "/admin/tenants", json={"name": name}, headers=ADMIN)
    tenant_id = created.json()["id"]
    _log_in(page)
    page.goto("/admin/ui/tenants")
    row = page.locator(f"#tenants tr[data-tenant='{name}']")
    assert row.locator("input[name=weight]").input_value() == "1"
    assert row.locator("input[name=max_inflight]").input_value() == ""
    row.locator("input[name=weight]").fill("25")
    row.locator("input[name=max_inflight]").fill("6")
    row.locator("button[type=submit]").click()
    assert "Saved the tenant's weight and max in-flight" in page.inner_text("#notice")
    row = page.locator(f"#tenants tr[data-tenant='{name}']")
    assert row.locator("input[name=weight]").input_value() == "25"
    assert row.locator("input[name=max_inflight]").input_value() == "6"
    shown = httpx.get(f"{live.base_url}/admin/tenants/{name}", headers=ADMIN).json()
    assert (shown["weight"], shown["max_inflight"]) == (25, 6)
    assert broker.hget(WEIGHT_KEY, tenant_id) == "25"
    assert broker.hget(CAP_KEY, tenant_id) == "6"

    # Emptied, max in-flight is no cap.
    row.locator("input[name=max_inflight]").fill("")
    row.locator("button[type=submit]").click()
    assert (
        page.locator(f"#tenants tr[data-tenant='{name}'] input[name=max_inflight]").input_value()
        == ""
    )
    assert broker.hget(CAP_KEY, tenant_id) is None
    audit = httpx.get(live.base_url + "/admin/audit", headers=ADMIN).json()["data"]
    changes = [
        (e["detail"]["changes"], e["actor"])
        for e in audit
        if e["action"] == "tenant.update" and e["detail"]["tenant"] == name
    ]
    assert [c for c, _ in changes] == [
        {"weight": "25", "max_inflight": None},
        {"weight": "25", "max_inflight": "6"},
    ]
    assert all(actor.startswith("page:") for _, actor in changes)


def test_the_share_form_refuses_bad_values(live: Stack, broker: redis.Redis) -> None:
    name = unique("share-form")
    created = httpx.post(
        live.base_url + "/admin/tenants",
        json={"name": name, "weight": 2, "max_inflight": 3},
        headers=ADMIN,
    )
    tenant_id = created.json()["id"]
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        assert http.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 303
        match = re.search(r'name="csrf" value="([^"]+)"', http.get("/admin/ui/tenants").text)
        assert match is not None
        path = f"/admin/ui/tenants/{tenant_id}/share"
        assert http.post(path, data={"weight": "4"}).status_code == 403  # no CSRF token
        for weight, cap in (("0", "3"), ("1001", "3"), ("-1", ""), ("x", ""), ("", ""), ("2", "0")):
            form = {"csrf": match.group(1), "weight": weight, "max_inflight": cap}
            refused = http.post(path, data=form)
            assert refused.status_code == 422, (weight, cap, refused.text)
            assert "must be" in refused.text and 'href="/admin/ui/tenants"' in refused.text
        missing = http.post(f"/admin/ui/tenants/{uuid.uuid4()}/share", data=form)
        assert missing.status_code == 404
    shown = httpx.get(f"{live.base_url}/admin/tenants/{name}", headers=ADMIN).json()
    assert (shown["weight"], shown["max_inflight"]) == (2, 3)
    assert broker.hget(CAP_KEY, tenant_id) == "3"


def test_calls_in_flight_unknown_when_redis_does_not_answer(live: Stack, seeded: Seeded) -> None:
    """An API whose broker is down still shows the queue from Postgres, in flight "?"."""
    dead = "redis://127.0.0.1:9/0"  # discard: nothing listens
    bare = Stack({**live.env, "AIJOBS_BROKER_URL": dead}, name="queue-no-redis")
    bare.start_api(ready_path="/healthz")
    try:
        body = httpx.get(bare.base_url + "/admin/queue", headers=ADMIN, timeout=30).json()
        row = {r["tenant"]: r for r in body["data"]}[seeded.name]
        assert row["in_flight_now"] is None
        assert row["queued"] == 5
        with httpx.Client(base_url=bare.base_url, timeout=30) as http:
            http.post("/admin/login", data={"token": ADMIN_TOKEN})
            html = http.get("/admin/ui/queue").text
        cell = re.search(
            rf'data-tenant="{re.escape(seeded.name)}">.*?class="num in-flight-now">([^<]*)<',
            html,
            re.DOTALL,
        )
        assert cell is not None and cell.group(1) == "?"
    finally:
        bare.stop()
