"""Checks on embed jobs: an embedding has no text output, so output checks are refused
at submit (422 unsupported, nothing written); input checks run on each input string."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import unique

EMBED = "openai/text-embedding-3-small"


def _jobs_of(db: psycopg.Connection[Any], client: Client) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (client.tenant,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_embed_job_with_output_checks_is_refused(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    text = unique("embed me")
    for check in (
        {"type": "contains", "value": "x"},
        {"type": "max_chars", "value": 10},  # "on" defaults to output
        {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "Is it polite?"},
    ):
        body = {"model": EMBED, "task": "embed", "input": text, "checks": [check]}
        response = client.submit(body, headers={"Idempotency-Key": unique("key")})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == "unsupported", problem
        assert "embed job has no text output" in problem["detail"]
    assert _jobs_of(db, client) == 0
    assert fake_openai.count(text) == 0


def test_input_checks_run_on_an_embed_jobs_input(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    too_long = {"type": "max_chars", "value": 20, "on": "input"}
    body = {"model": EMBED, "task": "embed", "input": ["short", unique("long")]}
    refused = client.submit({**body, "checks": [too_long]})
    assert refused.status_code == 422 and refused.json()["code"] == "check_failed"
    assert "message 1" in refused.json()["detail"]
    assert _jobs_of(db, client) == 0
    fine = client.submit({**body, "checks": [{**too_long, "value": 100}]})
    assert fine.status_code == 202, fine.text
    job = client.wait(fine.json()["id"])
    assert job["status"] == "succeeded" and job["checks"] is None, job
    assert len(job["result"]["embeddings"]) == 2
