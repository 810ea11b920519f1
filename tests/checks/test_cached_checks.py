"""An answer served without a call shows the checks it passed: a cache hit at submit (a
job or a batch line), an identical job coalesced on a leader in flight, and an admin
re-run answered from the cache."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique, wait_for_call
from tests.stack import ADMIN_TOKEN, Stack

CHECKS: list[dict[str, Any]] = [
    {"type": "contains", "value": "echo"},
    {"type": "max_chars", "value": 500},
]
PASSED = [
    {"type": "contains", "passed": True, "detail": "the output contains 'echo'"},
    {
        "type": "max_chars",
        "passed": True,
        "detail": "",  # filled in per message (its length)
    },
]


def _passed(message: str) -> list[dict[str, Any]]:
    length = len(f"echo: {message}")
    return [
        PASSED[0],
        {**PASSED[1], "detail": f"the output has {length} characters; at most 500 allowed"},
    ]


def test_a_cache_hit_shows_the_checks_its_answer_passed(
    client: Client, fake_openai: FakeOpenAI, live: Stack, db: psycopg.Connection[Any]
) -> None:
    message = unique("checked once")
    first = client.wait(client.submit(chat(message, checks=CHECKS)).json()["id"])
    assert first["status"] == "succeeded" and first["checks"] == _passed(message), first
    stored = db.execute(
        "SELECT c.checks FROM cache_entries c JOIN tenants t ON t.id = c.tenant_id"
        " WHERE t.name = %s",
        (client.tenant,),
    ).fetchall()
    assert stored == [(_passed(message),)]

    hit = client.submit(chat(message, checks=CHECKS)).json()
    assert hit["cache_hit"] is True and hit["status"] == "succeeded", hit
    assert hit["checks"] == _passed(message)
    assert client.http.get(f"/v1/jobs/{hit['id']}").json()["checks"] == _passed(message)

    # A batch line with the same request is a hit too, with the same checks.
    batch = client.http.post(
        "/v1/batches", json={"jobs": [{"custom_id": "a", **chat(message, checks=CHECKS)}]}
    )
    assert batch.status_code == 202, batch.text
    lines = client.http.get(f"/v1/batches/{batch.json()['id']}/results").text.splitlines()
    job_id = httpx.Response(200, content=lines[0]).json()["job_id"]
    line_job = client.http.get(f"/v1/jobs/{job_id}").json()
    assert line_job["cache_hit"] is True and line_job["checks"] == _passed(message)

    # An admin re-run of a job whose answer is cached is answered from the cache, with
    # its checks (the job's own checks were cleared first: they come from the entry).
    db.execute("UPDATE jobs SET checks = NULL WHERE id = %s", (first["id"],))
    rerun = httpx.post(
        f"{live.base_url}/admin/jobs/{first['id']}/rerun",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert rerun.status_code == 202, rerun.text
    again = client.wait(first["id"])
    assert again["cache_hit"] is True and again["checks"] == _passed(message), again
    assert fake_openai.count(message) == 1


def test_a_follower_shows_its_leaders_checks(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[sleep:2] led")
    leader = client.submit(chat(message, checks=CHECKS)).json()
    wait_for_call(fake_openai, message)
    follower = client.submit(chat(message, checks=CHECKS)).json()
    assert follower["status"] == "queued" and follower["id"] != leader["id"]
    done = [client.wait(job["id"]) for job in (leader, follower)]
    assert [job["status"] for job in done] == ["succeeded", "succeeded"], done
    assert done[1]["cache_hit"] is True
    assert done[0]["checks"] == done[1]["checks"] == _passed(message)
    assert fake_openai.count(message) == 1
