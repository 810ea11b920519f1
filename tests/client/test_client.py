"""The sync client (aijobs.client.Client) against real API and worker processes and
the fake provider: every method, the errors' codes, and webhook verification."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from aijobs.client import (
    AijobsError,
    Batch,
    Client,
    InvalidRequest,
    Job,
    NotFound,
    Unauthorized,
    WebhookVerificationError,
    verify_webhook,
)
from aijobs.jobs.schemas import JobRequest
from aijobs.webhooks import signing
from tests.conftest import Client as TenantClient
from tests.helpers import chat, unique, wait_until
from tests.prompts.test_versions import create, put_label, unique_name
from tests.stack import Stack
from tests.webhook_receiver import Receiver


@pytest.fixture
def tenant(make_client: Callable[..., TenantClient]) -> TenantClient:
    return make_client()


@pytest.fixture
def sdk(live: Stack, tenant: TenantClient) -> Iterator[Client]:
    with Client(live.base_url, tenant.api_key) as client:
        yield client


def test_submit_wait_get(sdk: Client) -> None:
    message = unique("hello")
    job = sdk.submit(chat(message, metadata={"order": "42"}))
    assert isinstance(job, Job)
    assert job.status in ("queued", "running") and job.metadata == {"order": "42"}

    done = sdk.wait(job.id, timeout_s=60)
    assert done.status == "succeeded", done
    assert done.done and done.result is not None
    assert done.result.content == f"echo: {message}"
    assert done.usage.input_tokens == len(message.split())
    assert isinstance(done.cost_usd, Decimal) and done.cost_usd > 0
    assert done.finished_at is not None and done.finished_at.tzinfo is not None
    assert sdk.get(job.id) == done


def test_submit_a_job_request_with_an_idempotency_key(sdk: Client) -> None:
    request = JobRequest.model_validate(chat(unique("typed"), cache=False))
    key = uuid.uuid4().hex
    first = sdk.submit(request, idempotency_key=key)
    again = sdk.submit(request, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(InvalidRequest) as refused:
        sdk.submit(chat(unique("other body")), idempotency_key=key)
    assert refused.value.code == "idempotency_conflict" and refused.value.status == 422


def test_wait_returns_the_unfinished_job_at_its_timeout(sdk: Client) -> None:
    job = sdk.submit(chat(unique("[sleep:4] slow"), cache=False))
    began = time.monotonic()
    seen = sdk.wait(job.id, timeout_s=1)
    assert seen.status in ("queued", "running") and not seen.done
    assert 0.9 <= time.monotonic() - began < 3.5
    assert sdk.wait(job.id, timeout_s=60).status == "succeeded"


def test_submit_prompt_by_label_and_by_version(sdk: Client, tenant: TenantClient) -> None:
    name = unique_name()
    create(tenant, name)
    assert put_label(tenant, name, "production", {"version": 1}).status_code == 200
    text = unique("the text")

    by_label = sdk.wait(sdk.submit_prompt(name, {"text": text}).id)
    assert by_label.status == "succeeded", by_label
    assert by_label.result is not None and by_label.result.content == f"echo: Summarise: {text}"
    assert by_label.prompt is not None and by_label.prompt.version == 1

    by_version = sdk.submit_prompt(name, {"text": text}, version=1, metadata={"via": "version"})
    assert by_version.metadata == {"via": "version"}
    assert by_version.prompt is not None and by_version.prompt.name == name

    with pytest.raises(InvalidRequest) as refused:
        sdk.submit_prompt(name, {"text": text}, label="nowhere")
    assert refused.value.code == "unknown_prompt"


def test_list_and_iterate_every_page(sdk: Client) -> None:
    ids = {sdk.submit(chat(unique("listed"))).id for _ in range(3)}
    page = sdk.list(limit=2)
    assert len(page.data) == 2 and page.next_cursor is not None
    rest = sdk.list(limit=2, cursor=page.next_cursor)
    assert {job.id for job in page.data + rest.data} == ids
    assert {job.id for job in sdk.iter_jobs(page_size=2)} == ids
    for job_id in ids:
        sdk.wait(job_id)
    assert {job.id for job in sdk.iter_jobs(status="succeeded", page_size=1)} == ids
    assert sdk.list(status="failed").data == []


def test_cancel(sdk: Client) -> None:
    job = sdk.submit(chat(unique("[sleep:5] stop me"), cache=False))
    cancelled = sdk.cancel(job.id)
    assert cancelled.id == job.id and cancelled.status == "cancelled"
    assert sdk.get(job.id).status == "cancelled"


def _wait_batch(sdk: Client, batch_id: str) -> Batch:
    def ended() -> Batch | None:
        batch = sdk.get_batch(batch_id)
        return batch if batch.done else None

    return wait_until(ended, what=f"batch {batch_id} to end")


def test_batch_submit_get_list_results(sdk: Client) -> None:
    first, second = unique("one"), unique("two")
    batch = sdk.submit_batch(
        [{"custom_id": "a", **chat(first)}, {"custom_id": "b", **chat(second)}],
        metadata={"run": "7"},
    )
    assert isinstance(batch, Batch)
    assert batch.counts.total == 2 and batch.metadata == {"run": "7"} and batch.tier == "standard"

    done = _wait_batch(sdk, batch.id)
    assert done.status == "completed" and done.counts.succeeded == 2
    lines = list(sdk.batch_results(batch.id))
    assert [line.custom_id for line in lines] == ["a", "b"]
    assert [line.result.content if line.result else None for line in lines] == [
        f"echo: {first}",
        f"echo: {second}",
    ]
    assert all(line.status == "succeeded" and line.cost_usd for line in lines)
    assert sdk.get(lines[0].job_id).custom_id == "a"

    assert [b.id for b in sdk.list_batches().data] == [batch.id]
    assert [b.id for b in sdk.iter_batches(page_size=1)] == [batch.id]


def test_cancel_batch(sdk: Client) -> None:
    jobs = [{"custom_id": str(n), **chat(unique("[sleep:5] wait"), cache=False)} for n in range(6)]
    batch = sdk.submit_batch(jobs)
    cancelled = sdk.cancel_batch(batch.id)
    assert cancelled.id == batch.id and cancelled.status in ("cancelling", "cancelled")
    final = _wait_batch(sdk, batch.id)
    assert final.status == "cancelled" and final.counts.cancelled >= 1


def test_errors_carry_the_code(sdk: Client, live: Stack) -> None:
    with Client(live.base_url, "not-a-key") as stranger, pytest.raises(Unauthorized) as denied:
        stranger.get(str(uuid.uuid4()))
    assert (denied.value.status, denied.value.code) == (401, "unauthorized")

    missing = str(uuid.uuid4())
    for call in (sdk.get, sdk.cancel, sdk.get_batch, lambda i: list(sdk.batch_results(i))):
        with pytest.raises(NotFound) as absent:
            call(missing)
        assert (absent.value.status, absent.value.code) == (404, "not_found")

    with pytest.raises(InvalidRequest) as invalid:
        sdk.submit({"model": "openai/gpt-4o-mini", "messages": [{"role": "robot"}]})
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_request")
    assert "messages" in invalid.value.detail
    with pytest.raises(AijobsError) as unknown:
        sdk.submit(chat("hi", model="openai/no-such-model"))
    assert unknown.value.code == "unknown_model"

    with pytest.raises(InvalidRequest) as refused_batch:
        sdk.submit_batch([{"custom_id": "x", **chat("a")}, {"custom_id": "x", **chat("b")}])
    assert refused_batch.value.code == "invalid_request"
    assert refused_batch.value.body["errors"][0]["custom_id"] == "x"


def test_verify_a_delivered_webhook(sdk: Client, tenant: TenantClient, receiver: Receiver) -> None:
    url = receiver.path()
    job = sdk.submit(chat(unique("hooked"), webhook_url=url))
    (delivered,) = receiver.wait_for(url, 1)

    payload = verify_webhook(delivered.body, delivered.headers, tenant.webhook_secret)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job.id
    assert verify_webhook(delivered.body.decode(), delivered.headers, tenant.webhook_secret)
    upper = {name.upper(): value for name, value in delivered.headers.items()}
    assert verify_webhook(delivered.body, upper, tenant.webhook_secret)["data"]["id"] == job.id

    tampered = json.loads(delivered.body)
    tampered["data"]["cost_usd"] = "0"
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(json.dumps(tampered), delivered.headers, tenant.webhook_secret)
    other_secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    with pytest.raises(WebhookVerificationError):
        verify_webhook(delivered.body, delivered.headers, other_secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(delivered.body, {}, tenant.webhook_secret)


def test_a_stale_webhook_is_refused(tenant: TenantClient) -> None:
    body = json.dumps({"type": "job.succeeded", "data": {}})
    stale = int(time.time()) - 600
    headers = signing.headers([tenant.webhook_secret], "msg_1", stale, body)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(body, headers, tenant.webhook_secret)
    fresh = signing.headers([tenant.webhook_secret], "msg_1", int(time.time()), body)
    assert verify_webhook(body, fresh, tenant.webhook_secret) == json.loads(body)
