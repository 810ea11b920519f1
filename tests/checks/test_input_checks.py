"""Input checks run at submit on every message's content (a prompt job's rendered
messages): failing, 422 check_failed naming the check, with nothing written or sent."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique
from tests.prompts.test_versions import create, put_label, unique_name, version_body

NO_PHONE = {"type": "not_regex", "pattern": r"\d{3}-\d{4}", "on": "input"}


def _jobs_of(db: psycopg.Connection[Any], client: Client) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (client.tenant,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_failing_input_check_refuses_the_job(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    refused_message = unique("call me at 555-1234")
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": refused_message},
        ],
        "checks": [{"type": "max_chars", "value": 1000, "on": "input"}, NO_PHONE],
    }
    response = client.submit(body, headers={"Idempotency-Key": unique("key")})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "check_failed"
    assert "not_regex" in problem["detail"] and "message 1" in problem["detail"]
    assert problem["check"] == {
        "index": 1,
        "type": "not_regex",
        "detail": "message 1 matches '\\\\d{3}-\\\\d{4}'",
    }
    assert _jobs_of(db, client) == 0
    assert fake_openai.count(refused_message) == 0

    too_long = client.submit(
        chat(unique("x" * 50), checks=[{"type": "max_chars", "value": 10, "on": "input"}])
    )
    assert too_long.status_code == 422 and too_long.json()["code"] == "check_failed"
    needs = client.submit(
        chat(unique("hello"), checks=[{"type": "regex", "pattern": "^please", "on": "input"}])
    )
    assert needs.status_code == 422 and needs.json()["code"] == "check_failed"
    assert _jobs_of(db, client) == 0

    # Passing input checks: the job runs, and output checks do not see the input ones.
    fine = unique("no numbers here")
    response = client.submit(chat(fine, checks=[NO_PHONE]))
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"])
    assert job["status"] == "succeeded" and job["checks"] is None, job
    assert _jobs_of(db, client) == 1


def test_input_checks_see_a_prompt_jobs_rendered_messages(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    name = unique_name()
    create(client, name, version_body("Summarise: {{text}}", checks=[NO_PHONE]))
    put_label(client, name, "production", {"version": 1})
    text = unique("ring 555-1234")
    response = client.submit({"prompt": {"name": name, "variables": {"text": text}}})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "check_failed"
    assert _jobs_of(db, client) == 0
    assert fake_openai.count(f"Summarise: {text}") == 0
