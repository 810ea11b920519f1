"""A provider this deployment has no key for is refused at submit (422 unsupported),
not accepted and then failed on a worker; sim is always there. An empty setting is an
unset one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from aijobs.db import session_scope
from aijobs.tenants.service import create_key
from tests.helpers import chat, unique
from tests.stack import Stack


@pytest.fixture(scope="module")
def keyless(stack: Stack) -> Iterator[Stack]:
    """An API process with no provider keys: OPENAI_API_KEY unset, ANTHROPIC_API_KEY empty
    (as compose's `${VAR:-}` passes it), OPENAI_BASE_URL empty too."""
    env = {k: v for k, v in stack.env.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.update(ANTHROPIC_API_KEY="", OPENAI_BASE_URL="")
    api = Stack(env, name="keyless")
    api.start_api()
    yield api
    api.stop()


def _jobs_of(db: psycopg.Connection[Any], name: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (name,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_provider_without_its_key_is_refused_at_submit(
    keyless: Stack, db: psycopg.Connection[Any]
) -> None:
    tenant = unique("keyless")
    with session_scope() as session:
        api_key = create_key(session, tenant).api_key
    http = httpx.Client(
        base_url=keyless.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    )
    cases = [
        (chat("hi", model="openai/gpt-4o-mini"), "openai/gpt-4o-mini", "OPENAI_API_KEY"),
        (
            {"model": "openai/text-embedding-3-small", "task": "embed", "input": "hi"},
            "openai/text-embedding-3-small",
            "OPENAI_API_KEY",
        ),
        (
            chat("hi", model="anthropic/claude-haiku-4-5"),
            "anthropic/claude-haiku-4-5",
            "ANTHROPIC_API_KEY",
        ),
        # A fallback no worker here could call is refused as well.
        (
            chat("hi", model="sim/echo", fallbacks=["openai/gpt-4o-mini"]),
            "openai/gpt-4o-mini",
            "OPENAI_API_KEY",
        ),
    ]
    for body, model, variable in cases:
        response = http.post("/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "unsupported"
        assert problem["detail"] == f"{model}: {variable} is not set on this deployment"
    assert _jobs_of(db, tenant) == 0

    accepted = http.post("/v1/jobs", json=chat("hi", model="sim/echo"))
    assert accepted.status_code == 202, accepted.text
    # An unknown model is still unknown_model, whatever the keys.
    unknown = http.post("/v1/jobs", json=chat("hi", model="openai/no-such-model"))
    assert unknown.json()["code"] == "unknown_model"
    assert _jobs_of(db, tenant) == 1
