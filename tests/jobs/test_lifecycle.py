"""Submit -> worker -> poll, through real API and worker processes and the fake provider."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, gpt4o_mini_cost, job_status, unique, wait_until


def test_submit_poll_succeeds_with_exact_usage_and_cost(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    message = unique("say hello")
    response = client.submit(chat(message, metadata={"order": "42"}))
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["metadata"] == {"order": "42"}

    done = client.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["content"] == f"echo: {message}"
    assert done["result"]["finish_reason"] == "stop"
    input_tokens = len(message.split())
    output_tokens = len(f"echo: {message}".split())
    assert done["usage"] == {"input_tokens": input_tokens, "output_tokens": output_tokens}
    assert Decimal(done["cost_usd"]) == gpt4o_mini_cost(input_tokens, output_tokens)
    assert done["attempts"] == 1
    assert done["error"] is None and done["cache_hit"] is False
    assert done["started_at"] and done["finished_at"]
    assert fake_openai.count(message) == 1

    rows = db.execute(
        "SELECT outcome, input_tokens, output_tokens, cost_usd, latency_ms FROM attempts"
        " WHERE job_id = %s",
        (job["id"],),
    ).fetchall()
    assert len(rows) == 1
    outcome, tokens_in, tokens_out, cost, latency_ms = rows[0]
    assert (outcome, tokens_in, tokens_out) == ("succeeded", input_tokens, output_tokens)
    assert cost == gpt4o_mini_cost(input_tokens, output_tokens)
    assert latency_ms is not None and latency_ms >= 0


def test_long_poll_waits_until_terminal(client: Client) -> None:
    job = client.submit(chat(unique("[sleep:1.5] slow"))).json()
    quick = client.http.get(f"/v1/jobs/{job['id']}")
    assert quick.json()["status"] in ("queued", "running")
    assert quick.headers.get("retry-after") == "1"

    # The longest wait: a poll that only returned at its deadline would come back
    # about 30 s after it began, however long the job queued before running.
    wait_s = 30
    started = time.time()
    waited = client.http.get(f"/v1/jobs/{job['id']}", params={"wait": wait_s})
    returned = time.time()
    done = waited.json()
    assert done["status"] == "succeeded"
    assert "retry-after" not in waited.headers
    # It came back when the job ended, not at its deadline (one clock: same machine);
    # the bound is the API's wake-up after the end, not the job's queueing or call.
    finished = datetime.fromisoformat(done["finished_at"]).timestamp()
    assert returned - finished < wait_s / 3, (started, finished, returned)


def test_long_poll_returns_at_the_deadline_when_not_done(client: Client) -> None:
    message = unique("[sleep:4] slower")
    job = client.submit(chat(message)).json()
    started = time.monotonic()
    waited = client.http.get(f"/v1/jobs/{job['id']}", params={"wait": 1})
    assert time.monotonic() - started >= 0.9  # it waited its second
    # ... and no longer than the job: a 4 s call cannot have ended yet.
    assert waited.json()["status"] in ("queued", "running")
    assert waited.headers.get("retry-after") == "1"


def test_embeddings(client: Client, fake_openai: FakeOpenAI) -> None:
    texts = [unique("first text"), unique("second one here")]
    response = client.submit(
        {"model": "openai/text-embedding-3-small", "task": "embed", "input": texts}
    )
    assert response.status_code == 202, response.text
    done = client.wait(response.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["task"] == "embed"
    vectors = done["result"]["embeddings"]
    assert [v[0] for v in vectors] == [float(len(t)) for t in texts]
    tokens = sum(len(t.split()) for t in texts)
    assert done["usage"] == {"input_tokens": tokens, "output_tokens": 0}
    assert Decimal(done["cost_usd"]) == tokens * Decimal("0.02") / 1_000_000
    assert fake_openai.count("\n".join(texts)) == 1


def test_sim_provider_echoes_the_last_user_message(client: Client) -> None:
    body = {
        "model": "sim/echo",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "ping pong"},
        ],
    }
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["content"] == "ping pong"
    assert done["usage"] == {"input_tokens": 4, "output_tokens": 2}
    assert Decimal(done["cost_usd"]) == gpt4o_mini_cost(4, 2)


def test_structured_output_is_parsed_and_validated(client: Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    message = unique('[reply:{"city": "Paris"}] where')
    done = client.wait(client.submit(chat(message, response_schema=schema)).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["parsed"] == {"city": "Paris"}


def test_transient_errors_are_retried(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[fail:500x2] flaky")
    done = client.wait(client.submit(chat(message)).json()["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 3
    assert fake_openai.count(message) == 3


def test_permanent_errors_fail_at_once(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[status:400] bad")
    done = client.wait(client.submit(chat(message)).json()["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "provider_error"
    assert done["error"]["retryable"] is False
    assert done["attempts"] == 1
    assert fake_openai.count(message) == 1


def test_cancel_running_job_keeps_the_call_cost(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    job = client.submit(chat(unique("[sleep:2] long"))).json()
    wait_until(lambda: job_status(client, job["id"])["status"] == "running", what="running")
    cancelled = client.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["code"] == "cancelled"

    def settled() -> tuple[Any, ...] | None:
        row = db.execute(
            "SELECT outcome, cost_usd FROM attempts WHERE job_id = %s", (job["id"],)
        ).fetchone()
        return row if row and row[0] != "started" else None

    row = wait_until(settled, what="the call in flight to settle", interval_s=0.1)
    assert row[0] == "succeeded" and row[1] > 0
    final = client.http.get(f"/v1/jobs/{job['id']}").json()
    assert final["status"] == "cancelled"
    assert final["result"] is None
    assert Decimal(final["cost_usd"]) == row[1]

    again = client.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancel_finished_job_is_a_conflict(client: Client) -> None:
    done = client.wait(client.submit(chat(unique("quick"), model="sim/echo")).json()["id"])
    response = client.http.post(f"/v1/jobs/{done['id']}/cancel")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


def test_list_pages_with_a_cursor(client: Client) -> None:
    ids = [client.submit(chat(unique(), model="sim/echo")).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.http.get("/v1/jobs", params=params).json()
        pages += 1
        seen += [job["id"] for job in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == list(reversed(ids))
    for job_id in ids:
        client.wait(job_id)
    succeeded = client.http.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()
    assert {job["id"] for job in succeeded["data"]} == set(ids)
    assert client.http.get("/v1/jobs", params={"status": "failed"}).json()["data"] == []


def test_a_tenant_never_sees_another_tenants_job(make_client: Any) -> None:
    owner, other = make_client(), make_client()
    job = owner.submit(chat(unique(), model="sim/echo")).json()
    for response in (
        other.http.get(f"/v1/jobs/{job['id']}"),
        other.http.post(f"/v1/jobs/{job['id']}/cancel"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    missing = other.http.get("/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("no job")
    assert other.http.get("/v1/jobs").json()["data"] == []


def test_requests_without_a_valid_key_are_401(live: Any) -> None:
    import httpx

    for headers in ({}, {"Authorization": "Bearer aj_wrong"}, {"Authorization": "Basic x"}):
        response = httpx.post(
            live.base_url + "/v1/jobs", json=chat("hi", model="sim/echo"), headers=headers
        )
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "unauthorized" and body["status"] == 401


def test_health_and_openapi(live: Any) -> None:
    import httpx

    assert httpx.get(live.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(live.base_url + "/readyz").json()
    assert ready["checks"] == {"database": "ok", "migrations": "ok", "broker": "ok"}
    paths = httpx.get(live.base_url + "/openapi.json").json()["paths"]
    assert "/v1/jobs" in paths and "/v1/jobs/{job_id}/cancel" in paths
