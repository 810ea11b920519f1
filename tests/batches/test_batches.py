"""Batches through real API and worker processes: intake (JSON and NDJSON, all or
nothing), counts, results in input order, Idempotency-Key, cancel, the batch's one
signed webhook, tenant isolation, and a large batch's intake time."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.conftest import Client
from tests.helpers import chat, unique, wait_until
from tests.webhook_receiver import Receiver

ENDED = ("completed", "cancelled")


def _line(custom_id: str, content: str, model: str = "sim/echo", **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, **chat(content, model=model, **extra)}


def _post(client: Client, body: dict[str, Any], **kwargs: Any) -> Any:
    return client.http.post("/v1/batches", json=body, **kwargs)


def _batch(client: Client, batch_id: str) -> dict[str, Any]:
    response = client.http.get(f"/v1/batches/{batch_id}")
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def _wait_ended(client: Client, batch_id: str, timeout_s: float = 60) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def ended() -> dict[str, Any] | None:
        seen.update(_batch(client, batch_id))
        return dict(seen) if seen["status"] in ENDED else None

    return wait_until(ended, timeout_s, lambda: f"the batch to end: {seen}")


def _results(client: Client, batch_id: str) -> list[dict[str, Any]]:
    response = client.http.get(f"/v1/batches/{batch_id}/results")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def _jobs_of(client: Client) -> list[dict[str, Any]]:
    response = client.http.get("/v1/jobs", params={"limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_a_json_batch_runs_and_gives_results_in_input_order(client: Client) -> None:
    same = unique("same")
    lines = [
        _line("zeta", unique("one")),
        _line("alpha", same),
        _line("mid", unique("three"), model="openai/gpt-4o-mini"),
        _line("beta", same),  # identical to "alpha": follows it (one call)
    ]
    response = _post(client, {"jobs": lines, "metadata": {"run": "1"}})
    assert response.status_code == 202, response.text
    batch = response.json()
    assert response.headers["location"] == f"/v1/batches/{batch['id']}"
    assert batch["status"] in ("queued", "running")
    assert batch["counts"]["total"] == 4
    assert batch["tier"] == "standard"
    assert batch["metadata"] == {"run": "1"}

    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed"
    assert done["counts"] == {
        "total": 4,
        "queued": 0,
        "running": 0,
        "succeeded": 4,
        "failed": 0,
        "cancelled": 0,
    }
    assert done["finished_at"] is not None
    assert float(done["cost_usd"]) > 0  # the gpt-4o-mini call's cost

    results = _results(client, batch["id"])
    assert [r["custom_id"] for r in results] == ["zeta", "alpha", "mid", "beta"]
    assert all(r["status"] == "succeeded" and r["error"] is None for r in results)
    assert results[1]["result"] == results[3]["result"]
    assert set(results[0]) == {
        "custom_id",
        "job_id",
        "status",
        "result",
        "error",
        "usage",
        "cost_usd",
    }
    job = client.http.get(f"/v1/jobs/{results[2]['job_id']}").json()
    assert job["batch_id"] == batch["id"]
    assert job["custom_id"] == "mid"
    assert Decimal(done["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in results)

    listed = client.http.get("/v1/batches", params={"limit": 1}).json()
    assert [b["id"] for b in listed["data"]] == [batch["id"]]
    assert listed["next_cursor"] is None


def test_an_ndjson_batch_with_query_options(client: Client, receiver: Receiver) -> None:
    url = receiver.path()
    body = "\n".join(json.dumps(_line(f"n{i}", unique("nd"))) for i in range(3)) + "\n"
    response = client.http.post(
        "/v1/batches",
        content=body.encode(),
        params={"webhook_url": url},
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["counts"]["total"] == 3
    assert batch["webhook"] == {"url": url, "status": "pending", "attempts": 0}
    assert _wait_ended(client, batch["id"])["status"] == "completed"
    assert [r["custom_id"] for r in _results(client, batch["id"])] == ["n0", "n1", "n2"]


def test_an_invalid_line_refuses_the_whole_batch(client: Client) -> None:
    lines: list[Any] = [
        _line("ok", unique("fine")),
        _line("bad-model", unique("x"), model="nope/none"),
        {"messages": [{"role": "user", "content": "no id"}], "model": "sim/echo"},
        _line("ok", unique("again")),  # repeated custom_id
        _line("typo", unique("y"), temprature=1),
        "not an object",
    ]
    response = _post(client, {"jobs": lines})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "invalid_request"
    errors = problem["errors"]
    assert [(e["index"], e["custom_id"]) for e in errors] == [
        (1, "bad-model"),
        (2, None),
        (3, "ok"),
        (4, "typo"),
        (5, None),
    ]
    assert "unknown_model" in errors[0]["detail"]
    assert "repeated" in errors[2]["detail"]
    # Nothing written: no batch, no job.
    assert client.http.get("/v1/batches").json()["data"] == []
    assert _jobs_of(client) == []

    ndjson = json.dumps(_line("a", unique("a"))) + "\n{not json\n"
    response = client.http.post(
        "/v1/batches", content=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 422, response.text
    assert [e["index"] for e in response.json()["errors"]] == [1]
    assert _jobs_of(client) == []


def test_a_repeated_custom_id_is_refused(client: Client) -> None:
    lines = [_line("dup", unique("a")), _line("dup", unique("b"))]
    response = _post(client, {"jobs": lines})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"index": 1, "custom_id": "dup", "detail": "custom_id 'dup' is repeated"}
    ]
    assert _jobs_of(client) == []


def test_the_batch_tier_refuses_sim_models(client: Client) -> None:
    lines = [_line("a", unique(), model="openai/gpt-4o-mini"), _line("b", unique())]
    response = _post(client, {"jobs": lines, "tier": "batch"})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "unsupported"
    assert (problem["index"], problem["custom_id"], problem["model"]) == (1, "b", "sim/echo")
    assert _jobs_of(client) == []


def test_an_idempotency_key_replays_the_batch(client: Client) -> None:
    body = {"jobs": [_line("a", unique("k")), _line("b", unique("k"))]}
    headers = {"Idempotency-Key": unique("key")}
    first = _post(client, body, headers=headers)
    assert first.status_code == 202, first.text
    again = _post(client, body, headers=headers)
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert len(_jobs_of(client)) == 2
    other = _post(client, {"jobs": [_line("c", unique())]}, headers=headers)
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_conflict"
    assert len(client.http.get("/v1/batches").json()["data"]) == 1


def test_cancel_cancels_queued_jobs_and_lets_running_ones_finish(
    client: Client, receiver: Receiver
) -> None:
    url = receiver.path()
    # Slow calls: the worker's few slots run some, the rest wait queued.
    lines = [_line(f"s{i}", unique("[sleep:2]"), model="openai/gpt-4o-mini") for i in range(30)]
    batch = _post(client, {"jobs": lines, "webhook_url": url}).json()
    wait_until(lambda: _batch(client, batch["id"])["counts"]["running"] > 0, what="a running job")
    response = client.http.post(f"/v1/batches/{batch['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelling = response.json()
    assert cancelling["status"] in ("cancelling", "cancelled")
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "cancelled"
    counts = done["counts"]
    assert counts["cancelled"] > 0 and counts["succeeded"] > 0  # the running ones finished
    assert counts["queued"] == counts["running"] == 0
    assert counts["succeeded"] + counts["failed"] + counts["cancelled"] == 30
    results = _results(client, batch["id"])
    assert {r["status"] for r in results} == {"succeeded", "cancelled"}
    (received,) = receiver.wait_for(url, 1)
    event = Webhook(client.webhook_secret).verify(received.body, received.headers)
    assert event["type"] == "batch.cancelled"
    # Cancelling again answers the batch as it is.
    again = client.http.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_the_batch_webhook_fires_once_signed(client: Client, receiver: Receiver) -> None:
    url = receiver.path()
    lines = [_line(f"w{i}", unique("hook")) for i in range(5)]
    batch = _post(client, {"jobs": lines, "webhook_url": url}).json()
    _wait_ended(client, batch["id"])

    def delivered() -> dict[str, Any] | None:
        seen = _batch(client, batch["id"])
        return seen if seen["webhook"]["status"] == "delivered" else None

    done = wait_until(delivered, what="the batch's webhook delivered")
    assert done["webhook"] == {"url": url, "status": "delivered", "attempts": 1}
    (received,) = receiver.requests(url)
    event = Webhook(client.webhook_secret).verify(received.body, received.headers)
    assert received.headers["webhook-id"] == f"msg_{batch['id'].replace('-', '')}_1"
    assert event["type"] == "batch.completed"
    assert event["data"]["id"] == batch["id"]
    assert event["data"]["status"] == "completed"
    assert event["data"]["counts"]["succeeded"] == 5


def test_another_tenants_batch_is_not_found(make_client: Callable[..., Client]) -> None:
    owner, other = make_client(), make_client()
    batch = _post(owner, {"jobs": [_line("a", unique())]}).json()
    for path in (f"/v1/batches/{batch['id']}", f"/v1/batches/{batch['id']}/results"):
        response = other.http.get(path)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
    assert other.http.post(f"/v1/batches/{batch['id']}/cancel").status_code == 404
    assert other.http.get("/v1/batches").json()["data"] == []


def test_a_large_batch_is_accepted_in_one_request(client: Client) -> None:
    """5,000 jobs (more than a 1 MiB body); AIJOBS_TEST_BATCH_JOBS=50000 for the full
    size (bench/batch_submit.py measures it in process)."""
    n = int(os.environ.get("AIJOBS_TEST_BATCH_JOBS", "5000"))
    lines = [
        {
            "custom_id": f"c{i}",
            "model": "sim/echo",
            "messages": [{"role": "user", "content": f"{i}"}],
        }
        for i in range(n)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    started = time.monotonic()
    response = client.http.post(
        "/v1/batches", content=body, headers={"Content-Type": "application/x-ndjson"}, timeout=120
    )
    accepted_s = time.monotonic() - started
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["counts"]["total"] == n
    started = time.monotonic()
    seen = _batch(client, batch["id"])
    read_ms = (time.monotonic() - started) * 1000
    print(f"\n{n} jobs accepted in {accepted_s:.2f} s; GET batch {read_ms:.1f} ms")
    assert sum(v for k, v in seen["counts"].items() if k != "total") == n
    # Do not leave the shared workers a backlog: cancel what is still queued.
    cancelled = client.http.post(f"/v1/batches/{batch['id']}/cancel", timeout=120)
    assert cancelled.status_code == 200, cancelled.text
    done = _wait_ended(client, batch["id"], timeout_s=120)
    assert done["counts"]["queued"] == 0


def test_jobs_past_the_ones_published_at_once_run_too(client: Client) -> None:
    """The API publishes the first 1,000 queued jobs; the sweeper publishes the rest."""
    n = 1_010
    lines = [_line(f"p{i}", f"{unique('many')} {i}") for i in range(n)]
    batch = _post(client, {"jobs": lines}).json()
    done = _wait_ended(client, batch["id"], timeout_s=180)
    assert done["status"] == "completed"
    assert done["counts"]["succeeded"] == n
    results = _results(client, batch["id"])
    assert [r["custom_id"] for r in results[-2:]] == [f"p{n - 2}", f"p{n - 1}"]


def test_rpm_counts_a_batch_by_its_jobs(make_client: Callable[..., Client]) -> None:
    client = make_client(rpm=5)
    too_many = _post(client, {"jobs": [_line(f"r{i}", unique()) for i in range(6)]})
    assert too_many.status_code == 429, too_many.text
    assert too_many.json()["code"] == "rate_limited"
    assert _jobs_of(client) == []
    fits = _post(client, {"jobs": [_line(f"r{i}", unique()) for i in range(5)]})
    assert fits.status_code == 202, fits.text
    again = _post(client, {"jobs": [_line("one", unique())]})
    assert again.status_code == 429, again.text
