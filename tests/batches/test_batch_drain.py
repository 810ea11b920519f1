"""A large batch drained end to end (counts, results in input order, one webhook, no job
lost), and a batch that its tenant's budget covers only in part (spend never above the
limit, the rest refused budget_exceeded)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.conftest import Client
from tests.helpers import unique, wait_until
from tests.webhook_receiver import Receiver

TERMINAL = {"succeeded", "failed", "cancelled"}


def _wait_ended(client: Client, batch_id: str, timeout_s: float) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        batch: dict[str, Any] = client.http.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["status"] in ("completed", "cancelled") else None

    return wait_until(ended, timeout_s, f"batch {batch_id} to end")


def _results(client: Client, batch_id: str) -> list[dict[str, Any]]:
    with client.http.stream("GET", f"/v1/batches/{batch_id}/results", timeout=120) as response:
        assert response.status_code == 200
        return [json.loads(line) for line in response.iter_lines() if line]


def test_a_large_batch_drains_with_every_job_ended_and_one_webhook(
    client: Client, receiver: Receiver
) -> None:
    """2,000 sim/echo jobs by default; AIJOBS_TEST_BATCH_DRAIN_JOBS=50000 for the full
    size (it prints intake and drain rates)."""
    n = int(os.environ.get("AIJOBS_TEST_BATCH_DRAIN_JOBS", "2000"))
    tag = unique("drain")
    body = "\n".join(
        json.dumps(
            {
                "custom_id": f"d{i}",
                "model": "sim/echo",
                "messages": [{"role": "user", "content": f"{tag} {i}"}],
            }
        )
        for i in range(n)
    ).encode()
    hook = receiver.path()
    started = time.monotonic()
    response = client.http.post(
        "/v1/batches",
        content=body,
        params={"webhook_url": hook},
        headers={"Content-Type": "application/x-ndjson"},
        timeout=120,
    )
    accepted_s = time.monotonic() - started
    assert response.status_code == 202, response.text
    batch = response.json()
    done = _wait_ended(client, batch["id"], timeout_s=max(120.0, n / 50))
    drained_s = time.monotonic() - started
    print(
        f"\n{n} jobs: accepted in {accepted_s:.2f} s ({n / accepted_s:,.0f}/s), "
        f"ended in {drained_s:.1f} s ({n / drained_s:,.0f}/s)"
    )
    assert done["status"] == "completed"
    assert done["counts"] == {
        "total": n,
        "queued": 0,
        "running": 0,
        "succeeded": n,
        "failed": 0,
        "cancelled": 0,
    }
    results = _results(client, batch["id"])
    assert [r["custom_id"] for r in results] == [f"d{i}" for i in range(n)]
    assert all(r["status"] == "succeeded" for r in results)
    assert [r["result"]["content"] for r in results[:3]] == [f"{tag} {i}" for i in range(3)]
    assert len({r["job_id"] for r in results}) == n
    assert Decimal(done["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in results)

    receiver.wait_for(hook, 1, timeout_s=30)
    time.sleep(1.0)  # a second delivery, if one were made, would arrive by now
    deliveries = receiver.requests(hook)
    assert len(deliveries) == 1
    event = json.loads(deliveries[0].body)
    assert event["type"] == "batch.completed"
    assert event["data"]["counts"]["succeeded"] == n


def test_a_budget_that_covers_part_of_a_batch_is_never_overspent(
    make_client: Callable[..., Client],
) -> None:
    """Forty lines, a daily budget for about half of them: the rest fail budget_exceeded
    (none is left waiting for good), and the spend stays within the limit."""
    from aijobs.billing.budget import max_call_cost
    from aijobs.jobs.schemas import JobRequest

    tag = unique("half")
    lines = [
        {
            "custom_id": f"h{i:02d}",
            "model": "sim/echo",
            "params": {"max_tokens": 50},
            "messages": [{"role": "user", "content": f"{tag} {i:02d} " + "word " * 40}],
        }
        for i in range(40)
    ]
    request = {k: v for k, v in lines[0].items() if k != "custom_id"}
    reserve = max_call_cost(JobRequest.model_validate(request), "sim/echo")
    probe = make_client()
    one = probe.http.post("/v1/jobs", json=request)
    assert one.status_code == 202, one.text
    cost = Decimal(
        wait_until(
            lambda: (
                job
                if (job := probe.http.get(f"/v1/jobs/{one.json()['id']}").json())["status"]
                in TERMINAL
                else None
            ),
            60,
            "the probe job",
        )["cost_usd"]
    )
    assert 0 < cost <= reserve
    limit = (cost * 20 + reserve).quantize(Decimal("0.0000001"))

    client = make_client(daily_budget=limit)
    response = client.http.post("/v1/batches", json={"jobs": lines})
    assert response.status_code == 202, response.text
    done = _wait_ended(client, response.json()["id"], timeout_s=120)
    results = _results(client, done["id"])
    statuses = {r["status"] for r in results}
    assert statuses <= {"succeeded", "failed"}, statuses
    failed = [r for r in results if r["status"] == "failed"]
    assert all(r["error"]["code"] == "budget_exceeded" for r in failed)
    succeeded = len(results) - len(failed)
    assert 15 <= succeeded <= 25, succeeded
    spent = sum(Decimal(r["cost_usd"]) for r in results)
    assert spent == Decimal(done["cost_usd"])
    assert spent <= limit
    usage = client.http.get("/v1/usage").json()
    assert Decimal(usage["total"]["cost_usd"]) <= limit
