"""The async client (aijobs.client.AsyncClient) against real API and worker processes:
every method and the errors' codes. No pytest-asyncio here: each test runs its
coroutine with asyncio.run."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from aijobs.client import AsyncClient, Batch, InvalidRequest, Job, NotFound, Unauthorized
from aijobs.jobs.schemas import JobRequest
from tests.conftest import Client as TenantClient
from tests.helpers import chat, unique
from tests.prompts.test_versions import create, put_label, unique_name
from tests.stack import Stack

Scenario = Callable[[AsyncClient], Awaitable[None]]


@pytest.fixture
def tenant(make_client: Callable[..., TenantClient]) -> TenantClient:
    return make_client()


@pytest.fixture
def run(live: Stack, tenant: TenantClient) -> Callable[[Scenario], None]:
    """Runs a scenario with an AsyncClient of a new tenant, on a loop of its own."""

    def running(scenario: Scenario) -> None:
        async def main() -> None:
            async with AsyncClient(live.base_url, tenant.api_key) as sdk:
                await scenario(sdk)

        asyncio.run(main())

    return running


async def _wait_batch(sdk: AsyncClient, batch_id: str, timeout_s: float = 60) -> Batch:
    deadline = time.monotonic() + timeout_s
    while not (batch := await sdk.get_batch(batch_id)).done:
        assert time.monotonic() < deadline, f"batch {batch_id}: {batch.status}"
        await asyncio.sleep(0.1)
    return batch


def test_submit_wait_get_cancel(run: Callable[[Scenario], None]) -> None:
    async def scenario(sdk: AsyncClient) -> None:
        message = unique("hello")
        jobs = await asyncio.gather(
            sdk.submit(chat(message)),
            sdk.submit(JobRequest.model_validate(chat(unique("[sleep:5] stop"), cache=False))),
        )
        quick, slow = jobs
        assert isinstance(quick, Job)
        done = await sdk.wait(quick.id, timeout_s=60)
        assert done.status == "succeeded", done
        assert done.result is not None and done.result.content == f"echo: {message}"
        assert await sdk.get(quick.id) == done

        cancelled = await sdk.cancel(slow.id)
        assert cancelled.status == "cancelled"
        assert (await sdk.wait(slow.id, timeout_s=5)).status == "cancelled"

    run(scenario)


def test_idempotency_and_wait_timeout(run: Callable[[Scenario], None]) -> None:
    async def scenario(sdk: AsyncClient) -> None:
        body = chat(unique("[sleep:4] slow"), cache=False)
        key = uuid.uuid4().hex
        first = await sdk.submit(body, idempotency_key=key)
        assert (await sdk.submit(body, idempotency_key=key)).id == first.id
        began = time.monotonic()
        seen = await sdk.wait(first.id, timeout_s=1)
        assert not seen.done and 0.9 <= time.monotonic() - began < 3.5

    run(scenario)


def test_submit_prompt(run: Callable[[Scenario], None], tenant: TenantClient) -> None:
    name = unique_name()
    create(tenant, name)
    assert put_label(tenant, name, "production", {"version": 1}).status_code == 200
    text = unique("text")

    async def scenario(sdk: AsyncClient) -> None:
        job = await sdk.wait((await sdk.submit_prompt(name, {"text": text})).id)
        assert job.result is not None and job.result.content == f"echo: Summarise: {text}"
        pinned = await sdk.submit_prompt(name, {"text": text}, version=1)
        assert pinned.prompt is not None and pinned.prompt.version == 1
        with pytest.raises(InvalidRequest) as refused:
            await sdk.submit_prompt(name, {"text": text}, label="nowhere")
        assert refused.value.code == "unknown_prompt"

    run(scenario)


def test_list_and_iterate(run: Callable[[Scenario], None]) -> None:
    async def scenario(sdk: AsyncClient) -> None:
        ids = {(await sdk.submit(chat(unique("listed")))).id for _ in range(3)}
        page = await sdk.list(limit=2)
        assert len(page.data) == 2 and page.next_cursor is not None
        rest = await sdk.list(limit=2, cursor=page.next_cursor)
        assert {job.id for job in page.data + rest.data} == ids
        assert {job.id async for job in sdk.iter_jobs(page_size=2)} == ids
        assert (await sdk.list(status="failed")).data == []

    run(scenario)


def test_batches(run: Callable[[Scenario], None]) -> None:
    async def scenario(sdk: AsyncClient) -> None:
        first, second = unique("one"), unique("two")
        batch = await sdk.submit_batch(
            [{"custom_id": "a", **chat(first)}, {"custom_id": "b", **chat(second)}],
            metadata={"run": "7"},
        )
        assert batch.counts.total == 2 and batch.metadata == {"run": "7"}
        assert (await _wait_batch(sdk, batch.id)).counts.succeeded == 2
        lines = [line async for line in sdk.batch_results(batch.id)]
        assert [line.custom_id for line in lines] == ["a", "b"]
        assert [line.result.content if line.result else None for line in lines] == [
            f"echo: {first}",
            f"echo: {second}",
        ]
        assert [b.id for b in (await sdk.list_batches()).data] == [batch.id]

        slow = [{"custom_id": str(n), **chat(unique("[sleep:5] w"), cache=False)} for n in range(6)]
        doomed = await sdk.submit_batch(slow)
        assert (await sdk.cancel_batch(doomed.id)).status in ("cancelling", "cancelled")
        assert (await _wait_batch(sdk, doomed.id)).status == "cancelled"
        assert {b.id async for b in sdk.iter_batches(page_size=1)} == {batch.id, doomed.id}

    run(scenario)


def test_errors_carry_the_code(run: Callable[[Scenario], None], live: Stack) -> None:
    async def scenario(sdk: AsyncClient) -> None:
        missing = str(uuid.uuid4())

        async def results(batch_id: str) -> list[Any]:
            return [line async for line in sdk.batch_results(batch_id)]

        for call in (sdk.get, sdk.cancel, sdk.get_batch, sdk.cancel_batch, results):
            with pytest.raises(NotFound) as absent:
                await call(missing)
            assert (absent.value.status, absent.value.code) == (404, "not_found")

        with pytest.raises(InvalidRequest) as invalid:
            await sdk.submit({"model": "openai/gpt-4o-mini", "messages": []})
        assert (invalid.value.status, invalid.value.code) == (422, "invalid_request")

        # An injected httpx.AsyncClient is used as given, and left open.
        async with httpx.AsyncClient() as http:
            stranger = AsyncClient(live.base_url, "not-a-key", http_client=http)
            with pytest.raises(Unauthorized) as denied:
                await stranger.list()
            assert (denied.value.status, denied.value.code) == (401, "unauthorized")
            await stranger.aclose()
            assert not http.is_closed

    run(scenario)
