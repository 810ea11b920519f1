"""The Python client's feedback methods, sync and async, against real API and worker
processes: give feedback, replay it by id, list it, and the errors' types."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import pytest

from aijobs.client import AsyncClient, Client, Feedback, InvalidRequest, NotFound
from tests.conftest import Client as TenantClient
from tests.feedback.test_feedback import ended_job, new_id
from tests.stack import Stack


def test_sync_client_feedback(live: Stack, make_client: Callable[..., TenantClient]) -> None:
    tenant, other = make_client(), make_client()
    job_id = ended_job(tenant)
    with Client(live.base_url, tenant.api_key) as sdk:
        made = sdk.feedback(job_id, "rating", 4.5, comment="good", source="reviewer", id="r-1")
        assert isinstance(made, Feedback)
        assert (made.id, made.job_id, made.name, made.value) == ("r-1", job_id, "rating", 4.5)
        assert (made.comment, made.source) == ("good", "reviewer")
        assert isinstance(made.created_at, datetime) and made.created_at.tzinfo is not None
        assert sdk.feedback(job_id, "rating", 1, id="r-1") == made  # a replay: as stored
        thumbs = sdk.feedback(job_id, "thumbs_up", True)
        assert thumbs.value is True and thumbs.source == "api" and thumbs.id.startswith("fb_")
        label = sdk.feedback(job_id, "label", "terse")
        assert sdk.list_feedback(job_id) == [made, thumbs, label]

        with pytest.raises(InvalidRequest) as refused:
            sdk.feedback(job_id, "rating", "x" * 10_001)
        assert refused.value.code == "invalid_request" and refused.value.status == 422
        assert len(sdk.list_feedback(job_id)) == 3
    with Client(live.base_url, other.api_key) as stranger:
        with pytest.raises(NotFound):
            stranger.feedback(job_id, "rating", 1)
        with pytest.raises(NotFound):
            stranger.list_feedback(job_id)


def test_async_client_feedback(live: Stack, make_client: Callable[..., TenantClient]) -> None:
    tenant = make_client()
    job_id = ended_job(tenant)
    key = new_id("key")

    async def main() -> None:
        async with AsyncClient(live.base_url, tenant.api_key) as sdk:
            made = await sdk.feedback(job_id, "helpful", False, source="user", id=key)
            assert (made.id, made.value, made.source, made.comment) == (key, False, "user", None)
            again = await asyncio.gather(
                *(sdk.feedback(job_id, "helpful", True, id=key) for _ in range(5))
            )
            assert all(one == made for one in again)
            score = await sdk.feedback(job_id, "score", 3)
            assert score.value == 3 and isinstance(score.value, int)
            assert await sdk.list_feedback(job_id) == [made, score]
            with pytest.raises(InvalidRequest):
                await sdk.feedback(job_id, "bad name!", 1)
            with pytest.raises(NotFound):
                await sdk.list_feedback("00000000-0000-0000-0000-000000000000")

    asyncio.run(main())
