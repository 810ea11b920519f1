"""The `aijobs` command as an operator runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

import httpx
import psycopg

from tests.conftest import Client, Services
from tests.helpers import chat, unique
from tests.stack import AIJOBS, Stack, child_env


def test_keys_create_prints_a_working_key_stored_hashed(
    live: Stack, services: Services, db: psycopg.Connection[Any]
) -> None:
    tenant = unique("cli")
    out = subprocess.run(
        [*AIJOBS, "keys", "create", "--tenant", tenant, "--daily-budget", "5", "--rpm", "60"],
        env=child_env(services.database_url, services.redis_url),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    issued = json.loads(out.strip().splitlines()[-1])
    assert issued["tenant"] == tenant
    assert issued["api_key"].startswith("aj_")
    assert issued["webhook_secret"].startswith("whsec_")

    row = db.execute(
        "SELECT k.key_hash, t.daily_budget_usd, t.rpm FROM api_keys k"
        " JOIN tenants t ON t.id = k.tenant_id WHERE t.name = %s",
        (tenant,),
    ).fetchone()
    assert row is not None
    assert row[0] == hashlib.sha256(issued["api_key"].encode()).hexdigest()
    assert issued["api_key"] not in json.dumps([str(v) for v in row])
    assert (row[1], row[2]) == (5, 60)

    response = httpx.post(
        live.base_url + "/v1/jobs",
        json=chat("hi", model="sim/echo"),
        headers={"Authorization": f"Bearer {issued['api_key']}"},
    )
    assert response.status_code == 202


def test_migrate_is_idempotent(services: Services) -> None:
    env = child_env(services.database_url, services.redis_url)
    subprocess.run([*AIJOBS, "migrate"], env=env, check=True, capture_output=True)


def test_a_missing_database_url_is_a_clear_error(services: Services) -> None:
    env = child_env(services.database_url, services.redis_url)
    del env["AIJOBS_DATABASE_URL"]
    result = subprocess.run([*AIJOBS, "migrate"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "AIJOBS_DATABASE_URL is not set" in result.stderr


def test_worker_refuses_a_concurrency_below_one(services: Services) -> None:
    for flags in (["--concurrency", "0"], ["--processes", "0"]):
        result = subprocess.run(
            [*AIJOBS, "worker", *flags],
            env=child_env(services.database_url, services.redis_url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "must be at least 1" in result.stderr


def test_rerun_without_a_selector_says_so_and_does_nothing(
    services: Services, client: Client, db: psycopg.Connection[Any]
) -> None:
    done = client.wait(client.submit(chat(unique("[status:400] cli keeps it failed"))).json()["id"])
    assert done["status"] == "failed"
    env = child_env(services.database_url, services.redis_url)
    for extra in ([], ["--dry-run"]):
        result = subprocess.run([*AIJOBS, "rerun", *extra], env=env, capture_output=True, text=True)
        assert result.returncode == 2, result
        assert "rerun needs --job ID or at least one filter" in result.stderr
        assert result.stdout == ""
    row = db.execute("SELECT status, attempts FROM jobs WHERE id = %s", (done["id"],)).fetchone()
    assert row == ("failed", done["attempts"])
    audited = db.execute(
        "SELECT count(*) FROM admin_audit WHERE detail::text LIKE %s", (f"%{done['id']}%",)
    ).fetchone()
    assert audited == (0,)
