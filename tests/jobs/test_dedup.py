"""Dedup: the exact cache, in-flight coalescing and Idempotency-Key, across processes."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg

from aijobs.jobs.fingerprint import fingerprint
from aijobs.jobs.schemas import JobRequest
from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, gpt4o_mini_cost, job_status, unique, wait_for_call, wait_until
from tests.stack import Stack


def _wait_running(client: Client, job_id: str) -> None:
    wait_until(lambda: job_status(client, job_id)["status"] == "running", what="running")


def test_the_same_request_twice_is_a_hit(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("cache me")
    first = client.wait(client.submit(chat(message)).json()["id"])
    assert first["status"] == "succeeded" and first["cache_hit"] is False

    response = client.submit(chat(message, metadata={"second": "yes"}))
    assert response.status_code == 202
    hit = response.json()
    assert hit["status"] == "succeeded"  # answered at submit, no trip through the queue
    assert hit["cache_hit"] is True
    assert hit["cost_usd"] == "0"
    assert hit["result"] == first["result"]
    assert hit["metadata"] == {"second": "yes"}
    assert hit["id"] != first["id"]
    assert fake_openai.count(message) == 1


def test_key_order_and_whitespace_do_not_matter(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("ordered")
    one = json.dumps(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": message}],
            "params": {"temperature": 0.2, "seed": 7},
        }
    )
    other = json.dumps(
        {
            "params": {"seed": 7, "temperature": 0.2},
            "messages": [{"content": message, "role": "user"}],
            "model": "openai/gpt-4o-mini",
        },
        indent=4,
    )
    headers = {"Content-Type": "application/json"}
    client.wait(client.http.post("/v1/jobs", content=one, headers=headers).json()["id"])
    again = client.http.post("/v1/jobs", content=other, headers=headers).json()
    assert again["cache_hit"] is True
    assert fake_openai.count(message) == 1


def test_fingerprint_covers_what_changes_the_answer() -> None:
    tenant = uuid.uuid4()
    base = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}

    def fp(tenant_id: uuid.UUID = tenant, **extra: Any) -> str:
        return fingerprint(tenant_id, JobRequest.model_validate({**base, **extra}))

    assert fp() == fp(metadata={"a": "b"}, max_attempts=5, timeout_s=3, cache=True)
    assert fp(params={"temperature": 0.1, "top_p": 1}) == fp(
        params={"top_p": 1, "temperature": 0.1}
    )
    assert fp() != fp(uuid.uuid4())
    assert fp() != fp(params={"temperature": 0.1})
    assert fp() != fp(model="openai/gpt-4o")
    assert fp() != fp(response_schema={"type": "object"})
    assert fp() != fp(fallbacks=["openai/gpt-4o"])
    assert fp() != fp(messages=[{"role": "user", "content": "x "}])


def test_cache_false_calls_the_provider_each_time(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("fresh")
    for _ in range(2):
        done = client.wait(client.submit(chat(message, cache=False)).json()["id"])
        assert done["status"] == "succeeded" and done["cache_hit"] is False
    assert fake_openai.count(message) == 2


def test_another_tenant_pays_for_its_own_call(
    make_client: Callable[..., Client], fake_openai: FakeOpenAI
) -> None:
    message = unique("mine")
    first, second = make_client(), make_client()
    a = first.wait(first.submit(chat(message)).json()["id"])
    b = second.wait(second.submit(chat(message)).json()["id"])
    assert a["cache_hit"] is False and b["cache_hit"] is False
    assert Decimal(b["cost_usd"]) > 0
    assert fake_openai.count(message) == 2


def test_twenty_identical_requests_at_once_make_one_call(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    live.ensure_workers(2)
    message = unique("[sleep:1] popular")
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: client.submit(chat(message)), range(20)))
    assert all(r.status_code == 202 for r in responses)
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 20
    done = [client.wait(job_id) for job_id in ids]
    assert all(job["status"] == "succeeded" for job in done), done
    assert len({job["result"]["content"] for job in done}) == 1
    assert fake_openai.count(message) == 1
    paid = [job for job in done if not job["cache_hit"]]
    assert len(paid) == 1
    assert Decimal(paid[0]["cost_usd"]) == gpt4o_mini_cost(
        len(message.split()), len(f"echo: {message}".split())
    )
    assert all(job["cost_usd"] == "0" for job in done if job["cache_hit"])
    saved = db.execute(
        "SELECT sum(saved_usd) FROM jobs WHERE id = ANY(%s::uuid[])", (ids,)
    ).fetchone()
    assert saved == (Decimal(paid[0]["cost_usd"]) * 19,)


def test_followers_of_a_failed_leader_fail_with_its_error(
    client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[sleep:1] [status:400] doomed")
    with ThreadPoolExecutor(5) as pool:
        ids = list(pool.map(lambda _: client.submit(chat(message)).json()["id"], range(5)))
    done = [client.wait(job_id) for job_id in ids]
    assert [job["status"] for job in done] == ["failed"] * 5
    assert {job["error"]["code"] for job in done} == {"provider_error"}
    assert {job["error"]["retryable"] for job in done} == {False}
    assert fake_openai.count(message) == 1
    # Failures are never cached: the next identical request calls again.
    client.wait(client.submit(chat(message)).json()["id"])
    assert fake_openai.count(message) == 2


def test_a_follower_finishes_when_the_leaders_worker_is_killed(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[sleep:2] fragile")
    leader = client.submit(chat(message)).json()
    _wait_running(client, leader["id"])
    followers = [client.submit(chat(message)).json() for _ in range(3)]
    assert all(f["status"] == "queued" for f in followers)
    wait_for_call(fake_openai, message)  # the leader's call is in flight
    live.kill_workers(signal.SIGKILL)
    live.start_worker()
    done = [client.wait(job["id"], timeout_s=60) for job in (leader, *followers)]
    assert all(job["status"] == "succeeded" for job in done), done
    assert fake_openai.count(message) == 2  # the killed call and its re-run; none for followers


def test_a_cancelled_leader_hands_over_to_a_follower(
    client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[sleep:1.5] abandoned")
    leader = client.submit(chat(message)).json()
    _wait_running(client, leader["id"])
    follower = client.submit(chat(message)).json()
    assert follower["status"] == "queued"
    assert client.http.post(f"/v1/jobs/{leader['id']}/cancel").json()["status"] == "cancelled"
    done = client.wait(follower["id"], timeout_s=30)
    assert done["status"] == "succeeded", done
    assert done["cache_hit"] is False
    assert fake_openai.count(message) == 2


def test_idempotency_key_replays_the_same_job(client: Client, db: psycopg.Connection[Any]) -> None:
    key = uuid.uuid4().hex
    body = chat(unique("once only"), model="sim/echo", cache=False)
    first = client.submit(body, headers={"Idempotency-Key": key})
    second = client.submit(body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    count = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (client.tenant,),
    ).fetchone()
    assert count == (1,)

    changed = client.submit({**body, "metadata": {"x": "y"}}, headers={"Idempotency-Key": key})
    assert changed.status_code == 422
    assert changed.headers["content-type"] == "application/problem+json"
    assert changed.json()["code"] == "idempotency_conflict"


def test_idempotency_key_is_per_tenant(make_client: Callable[..., Client]) -> None:
    key = uuid.uuid4().hex
    first, second = make_client(), make_client()
    a = first.submit(chat("hi", model="sim/echo"), headers={"Idempotency-Key": key}).json()
    b = second.submit(chat("hello", model="sim/echo"), headers={"Idempotency-Key": key}).json()
    assert a["id"] != b["id"]


def test_concurrent_requests_with_one_key_make_one_job(client: Client) -> None:
    key = uuid.uuid4().hex
    body = chat(unique("racy"), model="sim/echo", cache=False)
    with ThreadPoolExecutor(10) as pool:
        responses = list(
            pool.map(lambda _: client.submit(body, headers={"Idempotency-Key": key}), range(10))
        )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1


def test_an_idempotency_key_too_long_is_refused(client: Client) -> None:
    response = client.submit(chat("hi", model="sim/echo"), headers={"Idempotency-Key": "k" * 300})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_an_expired_entry_is_not_used(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("ephemeral")
    client.wait(client.submit(chat(message)).json()["id"])
    db.execute(
        "UPDATE cache_entries SET expires_at = now() - interval '1 second'"
        " WHERE tenant_id = (SELECT id FROM tenants WHERE name = %s)",
        (client.tenant,),
    )
    again = client.wait(client.submit(chat(message)).json()["id"])
    assert again["cache_hit"] is False
    assert fake_openai.count(message) == 2
