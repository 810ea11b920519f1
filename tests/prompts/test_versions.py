"""Prompt versions and labels over HTTP: numbering, immutability, label moves and
rollback, a split label sticky per subject, tenant isolation, and bad input refused."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from aijobs.prompts import labels
from tests.conftest import Client


def unique_name(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def version_body(content: str = "Summarise: {{text}}", **extra: Any) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": content},
        ],
        "model": "openai/gpt-4o-mini",
        **extra,
    }


def create(client: Client, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.http.post(f"/v1/prompts/{name}/versions", json=body or version_body())
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()
    return version


def put_label(client: Client, name: str, label: str, target: dict[str, Any]) -> Any:
    return client.http.put(f"/v1/prompts/{name}/labels/{label}", json=target)


def test_versions_are_numbered_and_shown(client: Client) -> None:
    name = unique_name()
    first = create(client, name, version_body("Hi {{ who }}, {{what}} {{who}}", note="first"))
    assert first["version"] == 1
    assert first["name"] == name
    assert first["variables"] == ["who", "what"]
    assert first["note"] == "first"
    assert first["model"] == "openai/gpt-4o-mini"
    assert first["params"] == {} and first["checks"] == [] and first["fallbacks"] == []
    assert first["response_schema"] is None and first["created_at"]
    second = create(client, name, version_body(params={"temperature": 0.2}))
    assert second["version"] == 2 and second["params"] == {"temperature": 0.2}

    shown = client.http.get(f"/v1/prompts/{name}").json()
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert shown["labels"] == {}
    one = client.http.get(f"/v1/prompts/{name}/versions/1")
    assert one.status_code == 200 and one.json() == first
    assert client.http.get(f"/v1/prompts/{name}/versions/3").status_code == 404

    listed = client.http.get("/v1/prompts").json()["data"]
    assert {"name": name, "latest_version": 2, "labels": {}} in listed


def test_versions_are_immutable(client: Client) -> None:
    name = unique_name()
    create(client, name)
    for method in ("PUT", "PATCH", "DELETE"):
        response = client.http.request(
            method, f"/v1/prompts/{name}/versions/1", json=version_body("changed")
        )
        assert response.status_code == 405, (method, response.text)
    assert client.http.get(f"/v1/prompts/{name}/versions/1").json()["messages"][1]["content"] == (
        "Summarise: {{text}}"
    )


def test_concurrent_creates_get_distinct_numbers(client: Client) -> None:
    name = unique_name()
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        made = list(
            pool.map(lambda i: create(client, name, version_body(f"v{i} {{{{x}}}}")), range(24))
        )
    assert sorted(v["version"] for v in made) == list(range(1, 25))
    assert client.http.get("/v1/prompts/" + name).json()["versions"][-1]["version"] == 24


def test_labels_move_and_roll_back(client: Client) -> None:
    name = unique_name()
    for _ in range(3):
        create(client, name)
    assert put_label(client, name, "production", {"version": 2}).json() == {
        "name": name,
        "label": "production",
        "version": 2,
    }
    assert put_label(client, name, "staging", {"version": 3}).status_code == 200
    assert client.http.get(f"/v1/prompts/{name}").json()["labels"] == {
        "production": 2,
        "staging": 3,
    }
    put_label(client, name, "production", {"version": 3})
    put_label(client, name, "production", {"version": 2})  # the rollback
    assert client.http.get(f"/v1/prompts/{name}").json()["labels"]["production"] == 2

    missing = put_label(client, name, "production", {"version": 9})
    assert missing.status_code == 422 and missing.json()["code"] == "unknown_prompt"
    split_missing = put_label(client, name, "canary", {"split": {"2": 50, "7": 50}})
    assert split_missing.status_code == 422 and split_missing.json()["code"] == "unknown_prompt"
    assert put_label(client, unique_name(), "production", {"version": 1}).status_code == 404
    split = put_label(client, name, "canary", {"split": {"3": 10, "2": 90}})
    assert split.json()["split"] == {"2": 90, "3": 10}
    listed = {p["name"]: p for p in client.http.get("/v1/prompts?limit=100").json()["data"]}
    assert listed[name]["labels"]["canary"] == {"split": {"2": 90, "3": 10}}


@pytest.mark.parametrize(
    "target",
    [
        {},
        {"version": 1, "split": {"1": 1}},
        {"version": 0},
        {"split": {}},
        {"split": {"1": 0}},
        {"split": {"x": 5}},
        {"split": {"01": 5}},
        {"split": {"1": -1}},
    ],
)
def test_bad_label_targets_are_refused(client: Client, target: dict[str, Any]) -> None:
    name = unique_name()
    create(client, name)
    response = put_label(client, name, "production", target)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    assert client.http.get(f"/v1/prompts/{name}").json()["labels"] == {}


BAD_VERSIONS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown model", version_body(model="openai/no-such"), "unknown_model"),
    ("unknown fallback", version_body(fallbacks=["foo/bar"]), "unknown_model"),
    (
        "unknown judge model",
        version_body(checks=[{"type": "judge", "model": "openai/nope", "rubric": "r"}]),
        "unknown_model",
    ),
    ("embedding model", version_body(model="openai/text-embedding-3-small"), "invalid_request"),
    ("no messages", version_body() | {"messages": []}, "invalid_request"),
    ("nul", version_body("a\u0000b"), "invalid_request"),
    ("lone surrogate", version_body("a\ud800b"), "invalid_request"),
    ("nul in note", version_body(note="x\u0000"), "invalid_request"),
    ("unknown field", version_body(temperature=1), "invalid_request"),
    ("too big", version_body("x" * 300_000), "invalid_request"),
    ("bad schema", version_body(response_schema={"type": 5}), "invalid_request"),
    (
        "remote $ref in the schema",
        version_body(response_schema={"properties": {"a": {"$ref": "http://127.0.0.1:9/x"}}}),
        "invalid_request",
    ),
    (
        "backreference",
        version_body(checks=[{"type": "regex", "pattern": r"(a)\1"}]),
        "invalid_request",
    ),
    (
        "input check of a kind that only reads output",
        version_body(checks=[{"type": "contains", "value": "x", "on": "input"}]),
        "invalid_request",
    ),
    (
        "unknown check type",
        version_body(checks=[{"type": "vibes"}]),
        "invalid_request",
    ),
    (
        "bad on_fail",
        version_body(checks=[{"type": "min_chars", "value": 1, "on_fail": "x"}]),
        "invalid_request",
    ),
]


@pytest.mark.parametrize(("case", "body", "code"), BAD_VERSIONS, ids=[c[0] for c in BAD_VERSIONS])
def test_bad_versions_are_refused(
    client: Client, db: psycopg.Connection[Any], case: str, body: dict[str, Any], code: str
) -> None:
    name = unique_name()
    response = client.http.post(
        f"/v1/prompts/{name}/versions",
        content=_json(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert db.execute("SELECT count(*) FROM prompts WHERE name = %s", (name,)).fetchone() == (0,)


def _json(body: dict[str, Any]) -> bytes:
    import json

    # ensure_ascii keeps a lone surrogate as its \\ud800 escape, as a client would send it.
    return json.dumps(body).encode()


def test_bad_names_are_refused(client: Client) -> None:
    for name in ("-lead", "a" * 101, "sp ace", "caf\u00e9"):
        response = client.http.post(f"/v1/prompts/{name}/versions", json=version_body())
        assert response.status_code in (404, 422), (name, response.text)
        assert response.status_code != 201


def test_checks_are_stored_with_their_defaults(client: Client) -> None:
    checks: list[dict[str, Any]] = [
        {"type": "regex", "pattern": "^[A-Z]"},
        {"type": "not_regex", "pattern": "sorry", "on": "input", "on_fail": "fail"},
        {"type": "contains", "value": "ok", "ignore_case": True},
        {"type": "not_contains", "value": "bad"},
        {"type": "min_chars", "value": 3},
        {"type": "max_chars", "value": 300, "on": "input"},
        {"type": "one_of", "values": ["yes", "no"], "on_fail": "fallback"},
        {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "Is it polite?"},
    ]
    made = create(client, unique_name(), version_body(checks=checks))
    assert [c["type"] for c in made["checks"]] == [c["type"] for c in checks]
    assert made["checks"][0] == {
        "type": "regex",
        "pattern": "^[A-Z]",
        "on_fail": "retry",
        "on": "output",
    }
    assert made["checks"][7]["threshold"] == 0.5


def test_another_tenant_sees_404(make_client: Callable[..., Client]) -> None:
    owner, other = make_client(), make_client()
    name = unique_name()
    create(owner, name)
    put_label(owner, name, "production", {"version": 1})
    assert other.http.get(f"/v1/prompts/{name}").status_code == 404
    assert other.http.get(f"/v1/prompts/{name}/versions/1").status_code == 404
    assert put_label(other, name, "production", {"version": 1}).status_code == 404
    assert all(p["name"] != name for p in other.http.get("/v1/prompts").json()["data"])
    # Its own prompt of the same name is its own: numbered from 1.
    assert create(other, name)["version"] == 1
    assert owner.http.get(f"/v1/prompts/{name}").json()["versions"][-1]["version"] == 1
    job = other.submit({"prompt": {"name": name, "variables": {"text": "x"}}})
    assert job.status_code == 422 and job.json()["code"] == "unknown_prompt"


def test_list_pages_by_name(client: Client) -> None:
    names = sorted(unique_name("page") for _ in range(5))
    for name in names:
        create(client, name)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.http.get("/v1/prompts", params=params).json()
        seen += [p["name"] for p in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == names


def test_split_shares_follow_the_weights() -> None:
    """The pick itself, over many subjects: shares within a few percent of the weights,
    and a subject's pick never changes."""
    tenant = uuid.uuid4()
    split = {"3": 90, "4": 10}
    picks = {
        f"user-{i}": labels.pick(
            split, tenant_id=tenant, name="s", label="production", subject=f"user-{i}"
        )
        for i in range(5000)
    }
    shares = Counter(picks.values())
    assert abs(shares[3] / 5000 - 0.9) < 0.03, shares
    for subject, version in list(picks.items())[:200]:
        again = labels.pick(split, tenant_id=tenant, name="s", label="production", subject=subject)
        assert again == version
