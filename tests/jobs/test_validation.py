"""Bad input never reaches a worker: each answers 4xx problem+json with a code, writing nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import Client

OK_MESSAGES = [{"role": "user", "content": "hi"}]

BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("missing model", {"messages": OK_MESSAGES}, 422, "invalid_request"),
    ("unknown provider", {"model": "foo/bar", "messages": OK_MESSAGES}, 422, "unknown_model"),
    ("unpriced model", {"model": "openai/no-such", "messages": OK_MESSAGES}, 422, "unknown_model"),
    (
        "model without provider",
        {"model": "gpt-4o-mini", "messages": OK_MESSAGES},
        422,
        "unknown_model",
    ),
    ("chat without messages", {"model": "sim/echo"}, 422, "invalid_request"),
    ("empty messages", {"model": "sim/echo", "messages": []}, 422, "invalid_request"),
    (
        "bad role",
        {"model": "sim/echo", "messages": [{"role": "tool", "content": "x"}]},
        422,
        "invalid_request",
    ),
    (
        "content not a string",
        {"model": "sim/echo", "messages": [{"role": "user", "content": 5}]},
        422,
        "invalid_request",
    ),
    (
        "unknown task",
        {"model": "sim/echo", "task": "image", "messages": OK_MESSAGES},
        422,
        "invalid_request",
    ),
    (
        "embed without input",
        {"model": "openai/text-embedding-3-small", "task": "embed"},
        422,
        "invalid_request",
    ),
    (
        "embed with empty input",
        {"model": "openai/text-embedding-3-small", "task": "embed", "input": []},
        422,
        "invalid_request",
    ),
    (
        "embed on a chat model",
        {"model": "openai/gpt-4o-mini", "task": "embed", "input": "x"},
        422,
        "invalid_request",
    ),
    (
        "chat on an embedding model",
        {"model": "openai/text-embedding-3-small", "messages": OK_MESSAGES},
        422,
        "invalid_request",
    ),
    (
        "chat with input",
        {"model": "sim/echo", "messages": OK_MESSAGES, "input": "x"},
        422,
        "invalid_request",
    ),
    (
        "max_attempts 0",
        {"model": "sim/echo", "messages": OK_MESSAGES, "max_attempts": 0},
        422,
        "invalid_request",
    ),
    (
        "max_attempts 11",
        {"model": "sim/echo", "messages": OK_MESSAGES, "max_attempts": 11},
        422,
        "invalid_request",
    ),
    (
        "timeout_s 0",
        {"model": "sim/echo", "messages": OK_MESSAGES, "timeout_s": 0},
        422,
        "invalid_request",
    ),
    (
        "temperature 3",
        {"model": "sim/echo", "messages": OK_MESSAGES, "params": {"temperature": 3}},
        422,
        "invalid_request",
    ),
    (
        "unknown param",
        {"model": "sim/echo", "messages": OK_MESSAGES, "params": {"n": 2}},
        422,
        "invalid_request",
    ),
    (
        "unknown field",
        {"model": "sim/echo", "messages": OK_MESSAGES, "urgency": 1},
        422,
        "invalid_request",
    ),
    (
        "unknown priority",
        {"model": "sim/echo", "messages": OK_MESSAGES, "priority": "urgent"},
        422,
        "invalid_request",
    ),
    (
        "priority not a string",
        {"model": "sim/echo", "messages": OK_MESSAGES, "priority": 1},
        422,
        "invalid_request",
    ),
    (
        "17 metadata pairs",
        {
            "model": "sim/echo",
            "messages": OK_MESSAGES,
            "metadata": {str(i): "v" for i in range(17)},
        },
        422,
        "invalid_request",
    ),
    (
        "metadata not strings",
        {"model": "sim/echo", "messages": OK_MESSAGES, "metadata": {"a": 1}},
        422,
        "invalid_request",
    ),
    (
        "invalid JSON Schema",
        {"model": "sim/echo", "messages": OK_MESSAGES, "response_schema": {"type": "nope"}},
        422,
        "invalid_request",
    ),
    (
        "webhook not http",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "ftp://example.com/x"},
        422,
        "invalid_request",
    ),
    # The test stack allows 127.0.0.1 (its webhook receivers listen there), so these
    # use 127.0.0.2: loopback, and not allowed.
    (
        "webhook loopback",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "http://127.0.0.2/hook"},
        422,
        "invalid_request",
    ),
    (
        "webhook localhost",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "http://localhost:8080/"},
        422,
        "invalid_request",
    ),
    (
        "webhook metadata",
        {
            "model": "sim/echo",
            "messages": OK_MESSAGES,
            "webhook_url": "http://169.254.169.254/latest",
        },
        422,
        "invalid_request",
    ),
    (
        "webhook private",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "https://10.1.2.3/"},
        422,
        "invalid_request",
    ),
    (
        "webhook ipv6 loopback",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "http://[::1]/"},
        422,
        "invalid_request",
    ),
    (
        "webhook mapped",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "http://[::ffff:127.0.0.2]/"},
        422,
        "invalid_request",
    ),
    (
        "webhook decimal ip",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "http://2130706434/"},
        422,
        "invalid_request",
    ),
    (
        "webhook hex ip",
        {"model": "sim/echo", "messages": OK_MESSAGES, "webhook_url": "http://0x7f.2/"},
        422,
        "invalid_request",
    ),
    ("body is a list", [1, 2], 422, "invalid_request"),
]


def _job_count(db: psycopg.Connection[Any], tenant: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (tenant,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]


@pytest.mark.parametrize(
    ("name", "body", "status", "code"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
def test_bad_bodies_are_refused_and_write_nothing(
    client: Client, db: psycopg.Connection[Any], name: str, body: Any, status: int, code: str
) -> None:
    _assert_problem(client.http.post("/v1/jobs", json=body), status, code)
    assert _job_count(db, client.tenant) == 0


def test_malformed_json_is_refused(client: Client, db: psycopg.Connection[Any]) -> None:
    response = client.http.post(
        "/v1/jobs", content=b'{"model": ', headers={"Content-Type": "application/json"}
    )
    _assert_problem(response, 422, "invalid_request")
    assert _job_count(db, client.tenant) == 0


def test_bodies_over_one_mebibyte_are_413(client: Client, db: psycopg.Connection[Any]) -> None:
    big = {"model": "sim/echo", "messages": [{"role": "user", "content": "x" * (1024 * 1024)}]}
    _assert_problem(client.http.post("/v1/jobs", json=big), 413, "invalid_request")

    def chunks() -> Any:
        for _ in range(17):
            yield b"x" * 65536

    streamed = client.http.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    _assert_problem(streamed, 413, "invalid_request")
    assert _job_count(db, client.tenant) == 0


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/jobs", {"limit": 0}),
        ("/v1/jobs", {"limit": 101}),
        ("/v1/jobs", {"status": "bogus"}),
        ("/v1/jobs", {"cursor": "not-a-cursor"}),
        ("/v1/jobs/00000000-0000-0000-0000-000000000000", {"wait": 31}),
        ("/v1/jobs/00000000-0000-0000-0000-000000000000", {"wait": -1}),
    ],
)
def test_bad_query_parameters(client: Client, path: str, params: dict[str, Any]) -> None:
    _assert_problem(client.http.get(path, params=params), 422, "invalid_request")


def test_unknown_routes_are_problem_json(client: Client) -> None:
    _assert_problem(client.http.get("/v1/nothing"), 404, "not_found")
    _assert_problem(client.http.get("/v1/jobs/not-a-uuid"), 404, "not_found")
