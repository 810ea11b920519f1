"""A tenant's share of the workers from the command line: `aijobs keys create
--max-inflight N --weight W` and `aijobs tenants set`, persisted and set in Redis."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import psycopg
import redis

from aijobs.scheduling import fair_queue
from tests.conftest import Services
from tests.helpers import unique
from tests.stack import AIJOBS, child_env

WEIGHT_KEY = fair_queue.PREFIX + fair_queue.WEIGHT  # the fair queue's hashes
CAP_KEY = fair_queue.PREFIX + fair_queue.CAP


def _aijobs(services: Services, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_env(services.database_url, services.redis_url)
    return subprocess.run([*AIJOBS, *args], env=env, capture_output=True, text=True, timeout=60)


def _row(db: psycopg.Connection[Any], name: str) -> tuple[Any, ...]:
    row = db.execute(
        "SELECT id::text, weight, max_inflight, rpm, daily_budget_usd FROM tenants WHERE name = %s",
        (name,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def _redis(services: Services, tenant_id: str) -> tuple[Any, Any]:
    conn = redis.Redis.from_url(services.redis_url, decode_responses=True)
    return conn.hget(WEIGHT_KEY, tenant_id), conn.hget(CAP_KEY, tenant_id)


def test_keys_create_sets_max_inflight_and_weight(
    services: Services, db: psycopg.Connection[Any]
) -> None:
    name = unique("cli-share")
    created = _aijobs(
        services, "keys", "create", "--tenant", name, "--rpm", "60", "--max-inflight", "4",
        "--weight", "3",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout.splitlines()[-1])["tenant"] == name
    tenant_id, *limits = _row(db, name)
    assert limits == [3, 4, 60, None]
    assert _redis(services, tenant_id) == ("3", "4")

    # Another key for the same tenant: the limits not given stay as they were.
    again = _aijobs(services, "keys", "create", "--tenant", name, "--max-inflight", "9")
    assert again.returncode == 0, again.stderr
    assert _row(db, name)[1:] == (3, 9, 60, None)
    assert _redis(services, tenant_id) == ("3", "9")
    keys = db.execute(
        "SELECT count(*) FROM api_keys WHERE tenant_id = %s::uuid", (tenant_id,)
    ).fetchone()
    assert keys == (2,)


def test_keys_create_refuses_a_share_out_of_range(
    services: Services, db: psycopg.Connection[Any]
) -> None:
    name = unique("cli-bad")
    for flag, value in (("--weight", "0"), ("--weight", "1001"), ("--max-inflight", "0")):
        result = _aijobs(services, "keys", "create", "--tenant", name, flag, value)
        assert result.returncode == 2, result
        assert "must be between" in result.stderr
        assert result.stdout == ""
    assert db.execute("SELECT 1 FROM tenants WHERE name = %s", (name,)).fetchone() is None


def test_tenants_set_changes_only_what_is_given(
    services: Services, db: psycopg.Connection[Any]
) -> None:
    name = unique("cli-set")
    created = _aijobs(services, "keys", "create", "--tenant", name, "--daily-budget", "5")
    assert created.returncode == 0, created.stderr
    tenant_id = _row(db, name)[0]

    changed = _aijobs(services, "tenants", "set", name, "--weight", "7", "--max-inflight", "2")
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(changed.stdout.splitlines()[-1])
    assert (shown["weight"], shown["max_inflight"], shown["daily_budget_usd"]) == (7, 2, "5")
    assert _row(db, name)[1:] == (7, 2, None, 5)
    assert _redis(services, tenant_id) == ("7", "2")

    cleared = _aijobs(services, "tenants", "set", tenant_id, "--max-inflight", "none")
    assert cleared.returncode == 0, cleared.stderr
    assert _row(db, name)[1:] == (7, None, None, 5)
    assert _redis(services, tenant_id) == ("7", None)

    audited = db.execute(
        "SELECT actor, detail->'changes' FROM admin_audit WHERE action = 'tenant.update'"
        " AND detail->>'tenant' = %s ORDER BY id",
        (name,),
    ).fetchall()
    assert [changes for _, changes in audited] == [
        {"weight": "7", "max_inflight": "2"},
        {"max_inflight": None},
    ]
    assert all(actor.startswith("cli:") for actor, _ in audited)

    for args, error in (
        ([], "at least one limit"),
        (["--weight", "none"], "invalid int value"),
        (["--weight", "1001"], "must be between"),
        (["--max-inflight", "x"], "not a number or none"),
    ):
        refused = _aijobs(services, "tenants", "set", name, *args)
        assert refused.returncode == 2, refused
        assert error in refused.stderr
    assert _row(db, name)[1:] == (7, None, None, 5)
    missing = _aijobs(services, "tenants", "set", unique("nobody"), "--weight", "2")
    assert missing.returncode == 2 and "no tenant" in missing.stderr
