"""A tenant's share of the workers through the admin API: weight and max_inflight set,
validated, cleared, audited, and set in the fair queue's Redis at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis

from aijobs.scheduling import fair_queue
from tests.conftest import Services
from tests.helpers import unique

WEIGHT_KEY = fair_queue.PREFIX + fair_queue.WEIGHT  # the fair queue's hashes
CAP_KEY = fair_queue.PREFIX + fair_queue.CAP


@pytest.fixture
def broker(services: Services) -> redis.Redis:
    return redis.Redis.from_url(services.redis_url, decode_responses=True)


def _share_in_redis(broker: redis.Redis, tenant_id: str) -> tuple[Any, Any]:
    return broker.hget(WEIGHT_KEY, tenant_id), broker.hget(CAP_KEY, tenant_id)


def test_create_with_a_share_and_patch_it(admin: httpx.Client, broker: redis.Redis) -> None:
    name = unique("share")
    created = admin.post("/admin/tenants", json={"name": name, "weight": 3, "max_inflight": 7})
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert (tenant["weight"], tenant["max_inflight"]) == (3, 7)
    assert _share_in_redis(broker, tenant["id"]) == ("3", "7")

    patched = admin.patch(f"/admin/tenants/{name}", json={"max_inflight": 2})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["weight"], patched.json()["max_inflight"]) == (3, 2)
    assert _share_in_redis(broker, tenant["id"]) == ("3", "2")

    patched = admin.patch(f"/admin/tenants/{tenant['id']}", json={"weight": 1000, "rpm": 50})
    assert (patched.json()["weight"], patched.json()["rpm"]) == (1000, 50)
    assert _share_in_redis(broker, tenant["id"]) == ("1000", "2")

    # null removes the cap: the tenant is no longer held back in the fair queue.
    cleared = admin.patch(f"/admin/tenants/{name}", json={"max_inflight": None})
    assert cleared.status_code == 200
    assert cleared.json()["max_inflight"] is None
    assert admin.get(f"/admin/tenants/{name}").json()["max_inflight"] is None
    assert _share_in_redis(broker, tenant["id"]) == ("1000", None)
    listed = {t["name"]: t for t in admin.get("/admin/tenants").json()["data"]}
    assert (listed[name]["weight"], listed[name]["max_inflight"]) == (1000, None)

    log = [e for e in admin.get("/admin/audit").json()["data"] if e["detail"].get("tenant") == name]
    changes = [e["detail"]["changes"] for e in log if e["action"] == "tenant.update"]
    assert {"max_inflight": None} in changes
    assert {"max_inflight": "2"} in changes
    assert {"weight": "1000", "rpm": "50"} in changes
    (create,) = [e for e in log if e["action"] == "tenant.create"]
    assert create["detail"]["limits"] == {"weight": "3", "max_inflight": "7"}


def test_a_new_tenant_has_weight_one_and_no_cap(admin: httpx.Client) -> None:
    tenant = admin.post("/admin/tenants", json={"name": unique("plain")}).json()
    assert (tenant["weight"], tenant["max_inflight"]) == (1, None)


@pytest.mark.parametrize(
    "body",
    [
        {"weight": 0},
        {"weight": 1001},
        {"weight": -1},
        {"weight": "x"},
        {"weight": None},
        {"weight": 1.5},
        {"max_inflight": 0},
        {"max_inflight": -1},
        {"max_inflight": 100_001},
        {"max_inflight": "x"},
    ],
)
def test_bad_values_are_422_and_change_nothing(
    admin: httpx.Client, broker: redis.Redis, body: dict[str, Any]
) -> None:
    name = unique("bad")
    tenant = admin.post("/admin/tenants", json={"name": name, "weight": 5, "max_inflight": 9})
    tenant_id = tenant.json()["id"]
    response = admin.patch(f"/admin/tenants/{name}", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert next(iter(body)) in problem["detail"]
    again = admin.get(f"/admin/tenants/{name}").json()
    assert (again["weight"], again["max_inflight"]) == (5, 9)
    assert _share_in_redis(broker, tenant_id) == ("5", "9")
    created = admin.post("/admin/tenants", json={"name": unique("bad-new"), **body})
    assert created.status_code == 422
    assert created.json()["code"] == "invalid_request"
