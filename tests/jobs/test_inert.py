"""A tenant's input is inert (SPEC invariant 9): a response_schema cannot make aijobs
fetch a URL or read a file, errors shown to a tenant carry only that tenant's data, and
characters the database refuses are a 422 naming the field, not a 500."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from aijobs.jobs.structured import InvalidOutput, parse_output
from tests.conftest import Client, Services
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique

SECRET = "SECRET-MARKER-7f3a"


class _Counting(ThreadingHTTPServer):
    hits = 0


@pytest.fixture
def schema_server() -> Iterator[_Counting]:
    """An HTTP server standing for an internal host: it counts every request it gets
    and answers a schema holding a secret marker."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.hits += 1
            body = json.dumps({"enum": [SECRET]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Counting(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    """A JSON file on the worker's disk; its contents must never reach a tenant."""
    path = tmp_path / "secret.json"
    path.write_text(json.dumps({"enum": [SECRET]}))
    return path.as_uri()


def _with_ref(ref: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"answer": {"$ref": ref}}, "required": ["answer"]}


def _job_count(db: psycopg.Connection[Any], tenant: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = %s",
        (tenant,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _assert_invalid_request(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == "invalid_request"
    return body


# --- $ref: only inside the schema ----------------------------------------------------


def test_a_remote_ref_is_refused_at_submit_and_never_fetched(
    client: Client, db: psycopg.Connection[Any], schema_server: _Counting
) -> None:
    port = schema_server.server_address[1]
    for ref in (
        f"http://127.0.0.1:{port}/schema.json",
        f"http://127.0.0.1:{port}/schema.json#/enum",
        "other.json",  # relative: resolved against a base URI, i.e. somewhere else
    ):
        body = chat(unique("[reply:{}] ref"), response_schema=_with_ref(ref))
        problem = _assert_invalid_request(client.submit(body))
        assert ref in problem["detail"]
    # resolved against an $id: a fetch of http://127.0.0.1:port/other.json
    via_id = {"$id": f"http://127.0.0.1:{port}/root.json", **_with_ref("other.json")}
    _assert_invalid_request(client.submit(chat(unique("id"), response_schema=via_id)))
    dynamic = {"$dynamicRef": f"http://127.0.0.1:{port}/schema.json#meta"}
    _assert_invalid_request(client.submit(chat(unique("dyn"), response_schema=dynamic)))
    assert _job_count(db, client.tenant) == 0
    assert schema_server.hits == 0


def test_a_file_ref_is_refused_and_its_contents_shown_nowhere(
    client: Client, db: psycopg.Connection[Any], secret_file: str
) -> None:
    response = client.submit(chat(unique("[reply:{}] f"), response_schema=_with_ref(secret_file)))
    _assert_invalid_request(response)
    assert SECRET not in response.text
    listed = client.http.get("/v1/jobs")
    assert SECRET not in listed.text
    assert _job_count(db, client.tenant) == 0


def test_a_dangling_local_ref_is_refused_at_submit(client: Client) -> None:
    schema = {"$defs": {"A": {"type": "string"}}, **_with_ref("#/$defs/B")}
    problem = _assert_invalid_request(client.submit(chat(unique("d"), response_schema=schema)))
    assert "#/$defs/B" in problem["detail"]


def test_validation_never_fetches_a_ref_that_slipped_past_submit(
    schema_server: _Counting, secret_file: str
) -> None:
    """The second wall: validation itself runs on a registry that retrieves nothing."""
    port = schema_server.server_address[1]
    for ref in (f"http://127.0.0.1:{port}/schema.json", secret_file):
        with pytest.raises(InvalidOutput) as raised:
            parse_output('{"answer": "x"}', _with_ref(ref))
        assert SECRET not in str(raised.value)
        assert "reference" in str(raised.value)
    # A subschema's $schema names a dialect; it is never fetched either.
    remote_dialect = {
        "properties": {"a": {"$schema": f"http://127.0.0.1:{port}/dialect", "type": "string"}}
    }
    assert parse_output('{"a": "x"}', remote_dialect) == {"a": "x"}
    assert schema_server.hits == 0


def test_a_pydantic_schema_with_defs_works_end_to_end(client: Client) -> None:
    """What pydantic's model_json_schema() gives: refs into $defs, resolved in place."""
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    class Reply(BaseModel):
        answer: Answer

    schema = Reply.model_json_schema()
    assert schema["properties"]["answer"] == {"$ref": "#/$defs/Answer"}
    good = client.submit(
        chat(unique('[reply:{"answer": {"text": "hi"}}] p'), response_schema=schema)
    )
    assert good.status_code == 202, good.text
    done = client.wait(good.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["parsed"] == {"answer": {"text": "hi"}}

    bad = chat(unique('[reply:{"answer": {"text": 7}}] p'), response_schema=schema, max_attempts=1)
    failed = client.wait(client.submit(bad).json()["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "invalid_output"
    assert failed["error"]["message"] == (
        "the output does not match response_schema at $.answer.text: expected type string"
    )


# --- errors in our words -------------------------------------------------------------


def test_invalid_output_is_told_in_our_words(client: Client) -> None:
    """jsonschema's message would quote the schema's values ("... is not one of [...]");
    ours names the place and the rule."""
    schema = {
        "type": "object",
        "properties": {"colour": {"enum": ["red", "green"]}},
        "required": ["colour"],
    }
    body = chat(unique('[reply:{"colour": "blue"}] c'), response_schema=schema, max_attempts=1)
    done = client.wait(client.submit(body).json()["id"])
    assert done["error"]["code"] == "invalid_output"
    message = done["error"]["message"]
    assert message == (
        "the output does not match response_schema at $.colour:"
        " the value is not one of the allowed values (enum)"
    )
    assert "red" not in message and "blue" not in message

    not_json = chat(unique("[reply:not json] j"), response_schema=schema, max_attempts=1)
    done = client.wait(client.submit(not_json).json()["id"])
    assert done["error"]["message"] == "the output is not JSON (it stops parsing at character 0)"


def test_a_providers_error_text_is_not_shown(client: Client, fake_openai: FakeOpenAI) -> None:
    """The fake's error body says "injected 400"; the tenant reads only the status."""
    done = client.wait(client.submit(chat(unique("[status:400] e"), max_attempts=1)).json()["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "provider_error"
    assert done["error"]["message"] == "the provider answered HTTP 400"


def test_sdk_exception_text_never_becomes_the_message() -> None:
    from worker.providers.errors import map_exception

    url = "https://gateway.internal.example/v1/chat/completions"
    request = httpx2.Request("POST", url)
    response = httpx2.Response(429, request=request, headers={"retry-after": "2"})
    body = {"error": {"message": f"org-{SECRET} over quota at {url}", "code": "rate_limit"}}
    mapped = map_exception(
        openai.RateLimitError(f"Error code: 429 - {body}", response=response, body=body)
    )
    assert (mapped.code, mapped.retryable, mapped.retry_after_s) == (
        "provider_rate_limited",
        True,
        2.0,
    )
    assert mapped.message == "the provider answered HTTP 429 (rate_limit)"
    internal = map_exception(RuntimeError(f"cannot read {SECRET}"))
    assert internal.code == "internal" and SECRET not in internal.message
    lost = map_exception(openai.APIConnectionError(message=f"{SECRET} {url}", request=request))
    assert lost.code == "provider_error" and lost.retryable
    assert SECRET not in lost.message and "gateway" not in lost.message


# --- characters the database refuses -------------------------------------------------


NUL, SURROGATE = "<nul>", "<surrogate>"
OK = chat("hi")
EMBED = {"model": "openai/text-embedding-3-small", "task": "embed"}
UNSTORABLE: list[tuple[str, dict[str, Any], str]] = [
    ("NUL in a message", chat(f"a{NUL}b"), "messages[0].content"),
    ("surrogate in a message", chat(f"a{SURROGATE}"), "messages[0].content"),
    ("NUL in a metadata value", {**OK, "metadata": {"k": f"v{NUL}"}}, "metadata.k"),
    ("NUL in a metadata key", {**OK, "metadata": {f"k{NUL}": "v"}}, "a key in metadata"),
    ("surrogate in a metadata key", {**OK, "metadata": {SURROGATE: "v"}}, "a key in metadata"),
    ("NUL in stop", {**OK, "params": {"stop": [f"x{NUL}"]}}, "params.stop[0]"),
    ("NUL in embed input", {**EMBED, "input": ["ok", NUL]}, "input[1]"),
    ("NUL in webhook_url", {**OK, "webhook_url": f"http://127.0.0.1/{NUL}"}, "webhook_url"),
    (
        "surrogate in a schema value",
        {**OK, "response_schema": {"type": "object", "description": SURROGATE}},
        "response_schema.description",
    ),
    (
        "NUL in a schema key",
        {**OK, "response_schema": {"properties": {f"a{NUL}": {}}}},
        "a key in response_schema.properties",
    ),
    (
        "NUL deep in a schema",
        {**OK, "response_schema": {"properties": {"a": {"enum": [NUL]}}}},
        "response_schema.properties.a.enum[0]",
    ),
]


def _raw(client: Client, body: dict[str, Any]) -> httpx.Response:
    """Post the body with its placeholders as JSON escapes (\\u0000, \\ud800): what a
    client can send, and httpx would not encode from a Python string."""
    raw = json.dumps(body).replace(NUL, "\\u0000").replace(SURROGATE, "\\ud800")
    return client.http.post(
        "/v1/jobs", content=raw.encode(), headers={"Content-Type": "application/json"}
    )


@pytest.mark.parametrize(("name", "body", "where"), UNSTORABLE, ids=[c[0] for c in UNSTORABLE])
def test_characters_the_database_refuses_are_422_naming_the_field(
    client: Client, db: psycopg.Connection[Any], name: str, body: dict[str, Any], where: str
) -> None:
    problem = _assert_invalid_request(_raw(client, body))
    assert where in problem["detail"], problem
    assert _job_count(db, client.tenant) == 0


# --- the database engine -------------------------------------------------------------


def test_database_errors_do_not_carry_bound_values(services: Services) -> None:
    from aijobs.db import get_engine

    marker = f"prompt-{uuid.uuid4().hex}"
    with pytest.raises(DBAPIError) as raised, get_engine().connect() as conn:
        # Division by zero: an error whose own text does not quote the value.
        conn.execute(text("SELECT CAST(:value AS text), 1 / 0"), {"value": marker})
    assert marker not in str(raised.value)
    assert "hidden" in str(raised.value)
