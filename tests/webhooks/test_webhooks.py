"""Signed webhooks through real API and worker processes, to a real receiver: every
delivery verified with the reference `standardwebhooks` library."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from cli.embedded import free_port
from tests.conftest import Client, Services
from tests.helpers import barrier, chat, unique, wait_until
from tests.stack import ADMIN_TOKEN, AIJOBS, Stack, child_env
from tests.webhook_receiver import Received, Receiver, Step


def _verify(secret: str, received: Received) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


def _job(client: Client, job_id: str) -> dict[str, Any]:
    response = client.http.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def _wait_webhook(client: Client, job_id: str, status: str, timeout_s: float = 60) -> Any:
    seen: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        seen.update(_job(client, job_id))
        terminal = seen["status"] in ("succeeded", "failed", "cancelled")
        return dict(seen) if terminal and seen["webhook"]["status"] == status else None

    return wait_until(
        reached, timeout_s, lambda: f"webhook {status}: {seen.get('webhook')}", interval_s=0.1
    )


def _wait_logged(client: Client, job_id: str) -> None:
    """Until the delivery's first attempt is in its log."""
    wait_until(lambda: _log(client, job_id), what="a logged delivery attempt")


def _log(client: Client, job_id: str) -> list[dict[str, Any]]:
    response = client.http.get(f"/v1/jobs/{job_id}/webhook-deliveries")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def _submit(client: Client, url: str, content: str = "", **extra: Any) -> dict[str, Any]:
    body = chat(content or unique("hook"), model="sim/echo", webhook_url=url, **extra)
    response = client.submit(body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def test_a_finished_job_sends_one_signed_event(client: Client, receiver: Receiver) -> None:
    url = receiver.path()
    job = _submit(client, url)
    assert job["webhook"] == {"url": url, "status": "pending", "attempts": 0}
    done = _wait_webhook(client, job["id"], "delivered")
    assert done["webhook"] == {"url": url, "status": "delivered", "attempts": 1}

    (received,) = receiver.requests(url)
    event = _verify(client.webhook_secret, received)
    assert received.headers["webhook-id"] == f"msg_{job['id'].replace('-', '')}_1"
    assert received.headers["content-type"] == "application/json"
    assert event["type"] == "job.succeeded"
    assert event["timestamp"]
    # The job as GET returned it when the event was first sent.
    assert event["data"] == {**done, "webhook": {"url": url, "status": "pending", "attempts": 0}}

    (attempt,) = _log(client, job["id"])
    assert attempt["status_code"] == 200 and attempt["outcome"] == "delivered"
    assert attempt["error"] is None and attempt["response_body"] == "ok"
    assert attempt["latency_ms"] >= 0 and attempt["attempted_at"]
    assert attempt["webhook_id"] == received.headers["webhook-id"]
    assert attempt["event"] == "job.succeeded" and attempt["attempt"] == 1


def test_a_receiver_failing_twice_gets_a_third_attempt(client: Client, receiver: Receiver) -> None:
    url = receiver.path(Step(500, body=b"x" * 5000), Step(503), Step(200))
    job = _submit(client, url)
    done = _wait_webhook(client, job["id"], "delivered")
    assert done["webhook"]["attempts"] == 3
    requests = receiver.requests(url)
    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # every retry sends the same event
    for received in requests:
        _verify(client.webhook_secret, received)
    log = _log(client, job["id"])
    assert [a["status_code"] for a in log] == [500, 503, 200]
    assert [a["outcome"] for a in log] == ["failed", "failed", "delivered"]
    assert log[0]["response_body"] == "x" * 1024  # truncated to a KiB
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.35 for gap in gaps), gaps  # 0.5 s ± 20%, not at once


def test_a_receiver_that_is_down_and_comes_back(client: Client) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook/back"
    job = _submit(client, url)
    _wait_logged(client, job["id"])
    receiver = Receiver(port).start()
    try:
        receiver.script("/hook/back")
        done = _wait_webhook(client, job["id"], "delivered")
        log = _log(client, job["id"])
        assert log[0]["status_code"] is None and "ConnectError" in log[0]["error"]
        assert log[-1]["status_code"] == 200
        assert done["webhook"]["attempts"] == len(log) >= 2
        (received,) = receiver.requests("/hook/back")
        _verify(client.webhook_secret, received)
    finally:
        receiver.stop()


def test_a_receiver_that_hangs_past_the_timeout(client: Client, receiver: Receiver) -> None:
    url = receiver.path(Step(200, sleep_s=4), Step(200))
    job = _submit(client, url)
    _wait_webhook(client, job["id"], "delivered")
    first, second = _log(client, job["id"])
    assert first["status_code"] is None and first["error"].startswith("timeout after 2s")
    assert 1900 <= first["latency_ms"] < 4000
    assert second["status_code"] == 200


def test_a_redirect_to_a_private_address_is_not_followed(
    client: Client, receiver: Receiver
) -> None:
    target = receiver.path()
    url = receiver.path(Step(302, {"Location": target}))
    job = _submit(client, url)
    done = _wait_webhook(client, job["id"], "failed")
    assert done["webhook"]["attempts"] == 4  # the first try and 3 retries
    assert [a["status_code"] for a in _log(client, job["id"])] == [302] * 4
    assert len(receiver.requests(url)) == 4
    assert receiver.requests(target) == []


def test_gone_stops_the_retries(client: Client, receiver: Receiver) -> None:
    url = receiver.path(Step(410))
    job = _submit(client, url)
    done = _wait_webhook(client, job["id"], "failed")
    assert done["webhook"]["attempts"] == 1
    # Failed is terminal: no retry is due, and a claim takes only a pending delivery.
    assert [a["status_code"] for a in _log(client, job["id"])] == [410]
    assert len(receiver.requests(url)) == 1


def test_a_failed_job_sends_job_failed(client: Client, receiver: Receiver) -> None:
    url = receiver.path()
    job = client.submit(chat(unique("[status:400] bad"), webhook_url=url)).json()
    _wait_webhook(client, job["id"], "delivered")
    (received,) = receiver.requests(url)
    event = _verify(client.webhook_secret, received)
    assert event["type"] == "job.failed"
    assert event["data"]["error"]["code"] == "provider_error"


def test_rotation_signs_with_both_secrets(
    client: Client, receiver: Receiver, services: Services
) -> None:
    rotated = subprocess.run(
        [*AIJOBS, "keys", "rotate-webhook-secret", "--tenant", client.tenant],
        env=child_env(services.database_url, services.redis_url),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    out = json.loads(rotated.strip().splitlines()[-1])
    assert out["tenant"] == client.tenant
    new_secret = out["webhook_secret"]
    assert new_secret.startswith("whsec_") and new_secret != client.webhook_secret
    assert out["previous_secret_expires_at"]

    url = receiver.path()
    job = _submit(client, url)
    _wait_webhook(client, job["id"], "delivered")
    (received,) = receiver.requests(url)
    signatures = received.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert _verify(new_secret, received)["data"]["id"] == job["id"]
    assert _verify(client.webhook_secret, received)["data"]["id"] == job["id"]
    new_only = Received(
        received.path, {**received.headers, "webhook-signature": signatures[0]}, received.body, 0
    )
    old_only = Received(
        received.path, {**received.headers, "webhook-signature": signatures[1]}, received.body, 0
    )
    _verify(new_secret, new_only)
    _verify(client.webhook_secret, old_only)


def test_rotating_an_unknown_tenant_fails(services: Services) -> None:
    result = subprocess.run(
        [*AIJOBS, "keys", "rotate-webhook-secret", "--tenant", unique("nobody")],
        env=child_env(services.database_url, services.redis_url),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no tenant" in result.stderr


def test_a_worker_killed_between_retries_still_delivers_once(
    live: Stack, client: Client, receiver: Receiver
) -> None:
    url = receiver.path(Step(503, {"Retry-After": "3"}), Step(200))
    job = _submit(client, url)
    _wait_logged(client, job["id"])
    live.kill_workers(signal.SIGKILL)
    live.start_worker()
    done = _wait_webhook(client, job["id"], "delivered", timeout_s=60)
    barrier(live, client, receiver)  # any duplicate message has been handled too
    first, second = receiver.requests(url)
    assert second.at - first.at >= 2.9  # Retry-After honoured
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    _verify(client.webhook_secret, second)
    assert [a["status_code"] for a in _log(client, job["id"])] == [503, 200]
    assert done["webhook"]["attempts"] == 2


def test_a_cancelled_job_sends_job_cancelled_once(
    client: Client, receiver: Receiver, db: Any
) -> None:
    url = receiver.path()
    job = client.submit(chat(unique("[sleep:1.5] long"), webhook_url=url)).json()
    wait_until(lambda: _job(client, job["id"])["status"] == "running", what="running")
    assert client.http.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    _wait_webhook(client, job["id"], "delivered")
    # The call still in flight settles later; it must not make a second event.
    wait_until(
        lambda: (
            not db.execute(
                "SELECT 1 FROM attempts WHERE job_id = %s AND outcome = 'started'", (job["id"],)
            ).fetchone()
        ),
        what="the call in flight to settle",
        interval_s=0.1,
    )
    # An event is a delivery row, made in the transaction that ends the job: the settle
    # has committed, so a second event would be there now.
    deliveries = db.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE job_id = %s", (job["id"],)
    ).fetchone()
    assert deliveries == (1,)
    assert _job(client, job["id"])["webhook"] == {"url": url, "status": "delivered", "attempts": 1}
    (received,) = receiver.requests(url)
    event = _verify(client.webhook_secret, received)
    assert event["type"] == "job.cancelled"
    assert event["data"]["status"] == "cancelled"


def test_a_follower_and_a_cache_hit_get_their_own_webhooks(
    client: Client, receiver: Receiver
) -> None:
    message = unique("[sleep:1] shared")
    leader_url, follower_url, hit_url = receiver.path(), receiver.path(), receiver.path()
    leader = client.submit(chat(message, webhook_url=leader_url)).json()
    wait_until(lambda: _job(client, leader["id"])["status"] == "running", what="running")
    follower = client.submit(chat(message, webhook_url=follower_url)).json()
    assert follower["status"] == "queued"
    _wait_webhook(client, follower["id"], "delivered")
    _wait_webhook(client, leader["id"], "delivered")
    hit = client.submit(chat(message, webhook_url=hit_url)).json()
    assert hit["status"] == "succeeded" and hit["cache_hit"] is True
    _wait_webhook(client, hit["id"], "delivered")
    for url, job in ((leader_url, leader), (follower_url, follower), (hit_url, hit)):
        (received,) = receiver.requests(url)
        event = _verify(client.webhook_secret, received)
        assert event["type"] == "job.succeeded"
        assert event["data"]["id"] == job["id"]
    assert _verify(client.webhook_secret, receiver.requests(follower_url)[0])["data"]["cache_hit"]


def test_the_attempt_log_is_the_owners_alone(
    make_client: Callable[..., Client], receiver: Receiver
) -> None:
    owner, other = make_client(), make_client()
    job = _submit(owner, receiver.path())
    _wait_webhook(owner, job["id"], "delivered")
    response = other.http.get(f"/v1/jobs/{job['id']}/webhook-deliveries")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    plain = owner.submit(chat(unique(), model="sim/echo")).json()
    assert plain["webhook"] is None
    assert _log(owner, plain["id"]) == []


def test_an_admin_redelivers(live: Stack, client: Client, receiver: Receiver) -> None:
    url = receiver.path()
    job = _submit(client, url)
    _wait_webhook(client, job["id"], "delivered")
    endpoint = f"{live.base_url}/admin/jobs/{job['id']}/webhook/redeliver"
    assert httpx.post(endpoint).status_code == 401
    tenant_key = {"Authorization": f"Bearer {client.api_key}"}
    forbidden = httpx.post(endpoint, headers=tenant_key)
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "unauthorized"

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = httpx.post(endpoint, headers=admin)
    assert response.status_code == 202, response.text
    assert response.json()["webhook"]["status"] in ("pending", "delivered")
    done = _wait_webhook(client, job["id"], "delivered")
    first, second = receiver.wait_for(url, 2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    _verify(client.webhook_secret, second)
    assert done["webhook"]["attempts"] == 2
    assert len(_log(client, job["id"])) == 2

    plain = client.submit(chat(unique(), model="sim/echo")).json()
    no_hook = httpx.post(
        f"{live.base_url}/admin/jobs/{plain['id']}/webhook/redeliver", headers=admin
    )
    assert no_hook.status_code == 409
    missing = httpx.post(
        f"{live.base_url}/admin/jobs/00000000-0000-0000-0000-000000000000/webhook/redeliver",
        headers=admin,
    )
    assert missing.status_code == 404


def test_a_worker_killed_mid_attempt_loses_nothing(
    live: Stack, client: Client, receiver: Receiver
) -> None:
    """The lease lapses: the lost attempt is logged and the delivery is sent again."""
    url = receiver.path(Step(200, sleep_s=1.5), Step(200))
    job = _submit(client, url)
    receiver.wait_for(url, 1)
    live.kill_workers(signal.SIGKILL)
    live.start_worker()
    done = _wait_webhook(client, job["id"], "delivered", timeout_s=60)
    first, second = _log(client, job["id"])
    assert first["error"] == "the worker was lost during the attempt"
    assert second["status_code"] == 200
    assert done["webhook"]["attempts"] == 2
    requests = receiver.requests(url)
    assert len(requests) == 2
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]


def test_the_trigger_makes_one_delivery_per_end(db: Any) -> None:
    """Any path that ends a job (here plain SQL, like a future admin tool) makes one
    delivery; an update that does not change the status makes none; ending again
    (after a re-run) makes the next one."""
    tenant = db.execute(
        "INSERT INTO tenants (id, name, webhook_secret) VALUES (gen_random_uuid(), %s, 'x')"
        " RETURNING id",
        (unique("trigger"),),
    ).fetchone()[0]
    job = db.execute(
        """
        INSERT INTO jobs (id, tenant_id, status, model, current_model, task, request,
                          metadata, webhook_url, max_attempts, model_attempts, timeout_s,
                          attempts, input_tokens, output_tokens, cost_usd, cache_hit,
                          saved_usd, followers, reserve_usd)
        VALUES (gen_random_uuid(), %s, 'queued', 'sim/echo', 'sim/echo', 'chat', '{}', '{}',
                'http://192.0.2.1/never', 3, 0, 60, 0, 0, 0, 0, false, 0, 0, '{}')
        RETURNING id
        """,
        (tenant,),
    ).fetchone()[0]
    # Park the deliveries in the future so no worker sends them during the test.
    park = "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour'"
    with db.transaction():
        db.execute("UPDATE jobs SET status = 'failed' WHERE id = %s", (job,))
        db.execute(park + " WHERE job_id = %s", (job,))
    db.execute("UPDATE jobs SET status = 'failed', attempts = 1 WHERE id = %s", (job,))
    db.execute("UPDATE jobs SET status = 'queued' WHERE id = %s", (job,))
    with db.transaction():
        db.execute("UPDATE jobs SET status = 'succeeded' WHERE id = %s", (job,))
        db.execute(park + " WHERE job_id = %s", (job,))
    rows = db.execute(
        "SELECT seq, event, status FROM webhook_deliveries WHERE job_id = %s ORDER BY seq",
        (job,),
    ).fetchall()
    assert rows == [(1, "job.failed", "pending"), (2, "job.succeeded", "pending")]
    assert db.execute("SELECT webhook_status FROM jobs WHERE id = %s", (job,)).fetchone() == (
        "pending",
    )
    db.execute("DELETE FROM jobs WHERE id = %s", (job,))
