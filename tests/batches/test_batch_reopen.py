"""An admin re-run of a job of an ended batch: the batch is running again while the job
runs, ends again when it ends (counters and cost as they are then), and its webhook
receives a second batch.completed with the new counts under a new webhook-id."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from standardwebhooks.webhooks import Webhook

from tests.batches.test_batches import _batch, _line, _post, _wait_ended
from tests.conftest import Client
from tests.helpers import unique, wait_until
from tests.stack import ADMIN_TOKEN, Stack
from tests.webhook_receiver import Receiver

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAKE = "openai/gpt-4o-mini"  # the fake provider, which reads the [directives]


def _job_of(client: Client, batch_id: str, custom_id: str) -> str:
    for line in client.http.get(f"/v1/batches/{batch_id}/results").text.splitlines():
        if f'"custom_id":"{custom_id}"' in line:
            return line.split('"job_id":"')[1].split('"')[0]
    raise AssertionError(f"no {custom_id} in the results")


def test_a_rerun_reopens_an_ended_batch_and_it_ends_again_with_a_second_webhook(
    live: Stack, client: Client, receiver: Receiver, db: psycopg.Connection[Any]
) -> None:
    url = receiver.path()
    lines = [
        _line("ok", unique("fine")),
        # The first call fails (one attempt only); the re-run's call succeeds, slowly
        # enough to see the batch running meanwhile.
        _line("flaky", unique("[sleep:2] [fail:500x1] flaky"), model=FAKE, max_attempts=1),
    ]
    batch = _post(client, {"jobs": lines, "webhook_url": url}).json()
    first = _wait_ended(client, batch["id"])
    assert first["status"] == "completed"
    assert (first["counts"]["succeeded"], first["counts"]["failed"]) == (1, 1)
    (one,) = receiver.wait_for(url, 1)
    event = Webhook(client.webhook_secret).verify(one.body, one.headers)
    assert event["type"] == "batch.completed"
    assert event["data"]["counts"]["failed"] == 1

    job_id = _job_of(client, batch["id"], "flaky")
    rerun = httpx.post(f"{live.base_url}/admin/jobs/{job_id}/rerun", headers=ADMIN)
    assert rerun.status_code == 202, rerun.text

    reopened = _batch(client, batch["id"])
    assert reopened["status"] == "running"
    assert reopened["finished_at"] is None
    counts = reopened["counts"]
    assert counts["queued"] + counts["running"] == 1
    assert (counts["succeeded"], counts["failed"]) == (1, 0)

    again = _wait_ended(client, batch["id"])
    assert again["status"] == "completed"
    assert (again["counts"]["succeeded"], again["counts"]["failed"]) == (2, 0)
    assert again["finished_at"] > first["finished_at"]

    one, two = receiver.wait_for(url, 2)
    assert one.headers["webhook-id"] == f"msg_{batch['id'].replace('-', '')}_1"
    assert two.headers["webhook-id"] == f"msg_{batch['id'].replace('-', '')}_2"
    second = Webhook(client.webhook_secret).verify(two.body, two.headers)
    assert second["type"] == "batch.completed"
    assert second["data"]["status"] == "completed"
    assert second["data"]["counts"]["succeeded"] == 2
    assert second["data"]["counts"]["failed"] == 0

    def delivered() -> dict[str, Any] | None:
        seen = _batch(client, batch["id"])
        return seen if seen["webhook"]["status"] == "delivered" else None

    assert wait_until(delivered, what="the second delivery")["webhook"]["attempts"] == 1
    seqs = db.execute(
        "SELECT seq, event, status FROM webhook_deliveries WHERE batch_id = %s ORDER BY seq",
        (batch["id"],),
    ).fetchall()
    assert seqs == [(1, "batch.completed", "delivered"), (2, "batch.completed", "delivered")]


def test_a_rerun_in_a_cancelled_batch_ends_it_cancelled_again(
    live: Stack, client: Client, receiver: Receiver
) -> None:
    url = receiver.path()
    lines = [_line(f"q{i}", unique("[sleep:2] waits"), model=FAKE) for i in range(8)]
    batch = _post(client, {"jobs": lines, "webhook_url": url}).json()
    cancel = client.http.post(f"/v1/batches/{batch['id']}/cancel")
    assert cancel.status_code == 200, cancel.text
    first = _wait_ended(client, batch["id"])
    assert first["status"] == "cancelled"
    receiver.wait_for(url, 1)
    cancelled = [
        line.split('"job_id":"')[1].split('"')[0]
        for line in client.http.get(f"/v1/batches/{batch['id']}/results").text.splitlines()
        if '"status":"cancelled"' in line
    ]
    assert cancelled

    rerun = httpx.post(f"{live.base_url}/admin/jobs/{cancelled[0]}/rerun", headers=ADMIN)
    assert rerun.status_code == 202, rerun.text
    assert _batch(client, batch["id"])["status"] == "cancelling"
    again = _wait_ended(client, batch["id"])
    assert again["status"] == "cancelled"
    assert again["counts"]["cancelled"] == first["counts"]["cancelled"] - 1
    _, two = receiver.wait_for(url, 2)
    assert Webhook(client.webhook_secret).verify(two.body, two.headers)["type"] == (
        "batch.cancelled"
    )
