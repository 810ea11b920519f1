"""Jobs that name a prompt: what runs is the rendered version (the fake provider records
what it received), the job shows which version ran, the cache covers the rendered
request, request fields override the version's, and usage groups by prompt version."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import unique
from tests.prompts.test_versions import create, put_label, unique_name, version_body


def prompt_job(name: str, variables: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"prompt": {"name": name, "variables": variables}, **extra}


def test_a_prompt_job_runs_the_rendered_messages(client: Client, fake_openai: FakeOpenAI) -> None:
    name = unique_name()
    create(client, name, version_body("Summarise: {{text}}"))
    made = create(
        client,
        name,
        version_body(
            "Summarise for {{ who }}: {{text}}",
            params={"temperature": 0.3, "max_tokens": 50},
            fallbacks=["anthropic/claude-haiku-4-5"],
        ),
    )
    put_label(client, name, "production", {"version": 2})
    text = unique("a {{who}} b")  # a value holding a placeholder is not expanded again
    response = client.submit(prompt_job(name, {"text": text, "who": "kids"}))
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["prompt"] == {"name": name, "version": 2}
    assert job["model"] == "openai/gpt-4o-mini"
    rendered = f"Summarise for kids: {text}"
    assert job["result"]["content"] == f"echo: {rendered}"
    [body] = fake_openai.received(rendered)
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": rendered},
    ]
    assert body["temperature"] == 0.3
    assert made["fallbacks"] == ["anthropic/claude-haiku-4-5"]

    # A version by number, not the label.
    old = client.submit(
        prompt_job(name, {"text": text})
        | {"prompt": {"name": name, "version": 1, "variables": {"text": text}}}
    )
    assert old.status_code == 202, old.text
    assert client.wait(old.json()["id"])["prompt"] == {"name": name, "version": 1}
    assert fake_openai.count(f"Summarise: {text}") == 1


def test_request_fields_override_the_version(client: Client, fake_openai: FakeOpenAI) -> None:
    name = unique_name()
    create(
        client,
        name,
        version_body(
            "Q: {{q}}", params={"temperature": 0.3, "max_tokens": 40}, model="openai/gpt-4o-mini"
        ),
    )
    put_label(client, name, "staging", {"version": 1})
    q = unique("override")
    response = client.submit(
        {
            "prompt": {"name": name, "label": "staging", "variables": {"q": q}},
            "model": "openai/gpt-4o",
            "params": {"max_tokens": 20},
        }
    )
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["model"] == "openai/gpt-4o"
    [body] = fake_openai.received(f"Q: {q}")
    assert body["model"] == "gpt-4o"
    assert body["temperature"] == 0.3  # kept from the version
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 20  # overridden


def test_the_cache_covers_the_rendered_request(client: Client, fake_openai: FakeOpenAI) -> None:
    """Two versions rendering the same text share the cache: the fingerprint is over
    what is sent, not over where it came from."""
    name = unique_name()
    create(client, name, version_body("Say {{x}}"))
    create(client, name, version_body("Say {{ x }}"))
    x = unique("cached")
    first = client.wait(
        client.submit(
            prompt_job(name, {"x": x})
            | {"prompt": {"name": name, "version": 1, "variables": {"x": x}}}
        ).json()["id"]
    )
    assert first["status"] == "succeeded" and not first["cache_hit"]
    again = client.submit({"prompt": {"name": name, "version": 2, "variables": {"x": x}}}).json()
    assert again["cache_hit"] is True and again["prompt"] == {"name": name, "version": 2}
    plain = client.submit(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"Say {x}"},
            ],
        }
    ).json()
    assert plain["cache_hit"] is True and plain["prompt"] is None
    other = client.submit({"prompt": {"name": name, "version": 2, "variables": {"x": x + "!"}}})
    assert other.json()["cache_hit"] is False
    client.wait(other.json()["id"])
    assert fake_openai.count(f"Say {x}") == 1


def test_bad_prompt_jobs_are_refused(client: Client, db: psycopg.Connection[Any]) -> None:
    name = unique_name()
    create(client, name, version_body("Hi {{a}} {{b}}"))
    put_label(client, name, "production", {"version": 1})
    cases: list[tuple[dict[str, Any], str, str]] = [
        (prompt_job(name, {"a": "1"}), "invalid_request", "b"),
        (prompt_job(name, {"a": "1", "b": "2", "c": "3"}), "invalid_request", "c"),
        (prompt_job(name, {"a": "1", "b": 2}), "invalid_request", "b"),  # type: ignore[dict-item]
        (prompt_job(name, {"a": "1", "b": "\u0000"}), "invalid_request", "variables"),
        (prompt_job(unique_name(), {}), "unknown_prompt", "no prompt"),
        (
            {"prompt": {"name": name, "version": 7, "variables": {"a": "1", "b": "2"}}},
            "unknown_prompt",
            "version 7",
        ),
        (
            {"prompt": {"name": name, "label": "nope", "variables": {"a": "1", "b": "2"}}},
            "unknown_prompt",
            "nope",
        ),
        (
            prompt_job(name, {"a": "1", "b": "2"}, messages=[{"role": "user", "content": "x"}]),
            "invalid_request",
            "",
        ),
        (prompt_job(name, {"a": "1", "b": "2"}, model="openai/nope"), "unknown_model", ""),
        (
            {
                "model": "openai/gpt-4o-mini",
                "messages": [{"role": "user", "content": "x"}],
                "subject": "s",
            },
            "invalid_request",
            "",
        ),
        (prompt_job(name, {"a": "x" * 600_000, "b": "2"}), "invalid_request", ""),
    ]
    before = db.execute("SELECT count(*) FROM jobs").fetchone()
    for body, code, words in cases:
        response = client.submit(body)
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert problem["code"] == code, (body, problem)
        assert words in str(problem), (body, problem)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == before


def test_a_split_label_is_sticky_per_subject(client: Client) -> None:
    name = unique_name()
    for _ in range(4):
        create(client, name)
    put_label(client, name, "production", {"split": {"3": 90, "4": 10}})
    text = unique("split")

    def version_for(subject: str) -> int:
        response = client.submit(prompt_job(name, {"text": text}, subject=subject))
        assert response.status_code == 202, response.text
        version: int = response.json()["prompt"]["version"]
        return version

    subjects = [f"user-{i}" for i in range(200)]
    first = {subject: version_for(subject) for subject in subjects}
    assert {subject: version_for(subject) for subject in subjects} == first
    shares = Counter(first.values())
    assert set(shares) == {3, 4}
    assert abs(shares[3] / 200 - 0.9) < 0.07, shares
    # Without a subject the pick is random: both versions come up.
    seen = {
        client.submit(prompt_job(name, {"text": text})).json()["prompt"]["version"]
        for _ in range(80)
    }
    assert seen == {3, 4}


def test_usage_groups_by_prompt_version(client: Client) -> None:
    name = unique_name()
    create(client, name, version_body("A {{x}}"))
    create(client, name, version_body("B {{x}}"))
    jobs = [
        client.submit(
            {"prompt": {"name": name, "version": v, "variables": {"x": unique()}}}
        ).json()["id"]
        for v in (1, 2, 2)
    ]
    plain = client.submit(
        {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": unique()}]}
    ).json()["id"]
    for job_id in [*jobs, plain]:
        assert client.wait(job_id)["status"] == "succeeded"
    report = client.http.get("/v1/usage", params={"group_by": "prompt"}).json()
    lines = {
        (line["prompt"]["version"] if line["prompt"] else None): line for line in report["data"]
    }
    assert lines[1]["calls"] == 1 and lines[2]["calls"] == 2 and lines[None]["calls"] == 1
    assert lines[1]["prompt"] == {"name": name, "version": 1}
    assert lines[2]["input_tokens"] > 0 and lines[2]["cost_usd"] != "0"
    assert report["total"]["calls"] == 4


@pytest.mark.parametrize("label", [None, "production"])
def test_the_default_label_is_production(client: Client, label: str | None) -> None:
    name = unique_name()
    create(client, name, version_body("One {{t}}"))
    create(client, name, version_body("Two {{t}}"))
    ref: dict[str, Any] = {"name": name, "variables": {"t": str(uuid.uuid4())}}
    if label:
        ref["label"] = label
    missing = client.submit({"prompt": ref})
    assert missing.status_code == 422 and missing.json()["code"] == "unknown_prompt"
    put_label(client, name, "production", {"version": 1})
    assert client.submit({"prompt": ref}).json()["prompt"]["version"] == 1


def test_stats_per_version(make_client: Any) -> None:
    client, other = make_client(), make_client()
    name = unique_name()
    create(client, name, version_body("A {{x}}"))
    create(client, name, version_body("B {{x}}"))
    x = unique("stats")
    submitted = [
        client.submit({"prompt": {"name": name, "version": v, "variables": {"x": value}}})
        for v, value in ((1, x), (1, x + " again"), (2, x + " [status:400]"))
    ]
    ended = [client.wait(response.json()["id"]) for response in submitted]
    assert [job["status"] for job in ended] == ["succeeded", "succeeded", "failed"]
    hit = client.submit({"prompt": {"name": name, "version": 1, "variables": {"x": x}}}).json()
    assert hit["cache_hit"] is True
    stats = client.http.get(f"/v1/prompts/{name}/stats").json()
    one, two = stats["versions"]
    assert one["version"] == 1 and one["jobs"] == 3 and one["succeeded"] == 3
    assert one["cache_hits"] == 1 and one["failed"] == 0 and one["failed_by_code"] == {}
    assert float(one["cost_usd"]) > 0
    assert one["latency_ms"]["p50"] is not None and one["latency_ms"]["p95"] >= 0
    assert two["version"] == 2 and two["jobs"] == 1 and two["failed"] == 1
    assert two["failed_by_code"] == {"provider_error": 1}
    assert two["checks_passed"] is None and two["feedback"] == {}
    assert other.http.get(f"/v1/prompts/{name}/stats").status_code == 404
    bad = client.http.get(
        f"/v1/prompts/{name}/stats", params={"start": "2026-01-02", "end": "2026-01-01"}
    )
    assert bad.status_code == 422


def test_an_idempotency_key_covers_the_request_as_sent(client: Client) -> None:
    """The body hash is over the prompt reference and variables, not the rendered
    version: a key under a random split replays its job whatever the next pick is."""
    name = unique_name()
    create(client, name, version_body("One: {{text}}"))
    create(client, name, version_body("Two: {{text}}"))
    put_label(client, name, "production", {"split": {"1": 50, "2": 50}})
    body = prompt_job(name, {"text": unique("idem")})
    key = {"Idempotency-Key": unique("key")}
    first = client.submit(body, headers=key).json()
    for _ in range(10):
        again = client.submit(body, headers=key)
        assert again.status_code == 202 and again.json()["id"] == first["id"]
    changed = client.submit(prompt_job(name, {"text": unique("other")}), headers=key)
    assert changed.status_code == 422 and changed.json()["code"] == "idempotency_conflict"
