"""Feedback on jobs over HTTP against real API and worker processes: create, replay by
id (one after another and at the same moment), list, tenant isolation, hostile input
refused with nothing written, the cap per job, and the per-version aggregation in a
prompt's stats."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Client
from tests.helpers import chat, unique
from tests.prompts.test_versions import create, unique_name, version_body

FEEDBACK_KEYS = {"id", "job_id", "name", "value", "comment", "source", "created_at"}


def ended_job(client: Client, **extra: Any) -> str:
    response = client.submit(chat(unique("rate me"), model="sim/echo", **extra))
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"])
    assert job["status"] == "succeeded", job
    return str(job["id"])


def give(client: Client, job_id: str, body: dict[str, Any]) -> httpx.Response:
    return client.http.post(f"/v1/jobs/{job_id}/feedback", json=body)


def new_id(prefix: str) -> str:
    """A feedback id no other test uses (ids take no spaces)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def stored(db: psycopg.Connection[Any], job_id: str) -> int:
    row = db.execute("SELECT count(*) FROM feedback WHERE job_id = %s", (job_id,)).fetchone()
    assert row is not None
    return int(row[0])


def test_create_replay_and_list(client: Client, db: psycopg.Connection[Any]) -> None:
    job_id = ended_job(client)
    first = give(client, job_id, {"name": "thumbs_up", "value": True})
    assert first.status_code == 201, first.text
    made = first.json()
    assert set(made) == FEEDBACK_KEYS
    assert made["job_id"] == job_id and made["name"] == "thumbs_up" and made["value"] is True
    assert made["source"] == "api" and made["comment"] is None
    assert made["id"].startswith("fb_") and made["created_at"]

    body = {
        "id": "review-1",
        "name": "rating",
        "value": 4.5,
        "comment": "close, but verbose",
        "source": "reviewer",
    }
    second = give(client, job_id, body)
    assert second.status_code == 201, second.text
    assert {k: second.json()[k] for k in body} == body
    # The same id again: 200 with the feedback as stored, whatever the body says now.
    again = give(client, job_id, {**body, "value": 1, "comment": "changed my mind"})
    assert again.status_code == 200, again.text
    assert again.json() == second.json()
    # Without an id every call is new feedback.
    third = give(client, job_id, {"name": "label", "value": "too long", "source": "user"})
    assert third.status_code == 201 and third.json()["value"] == "too long"

    listed = client.http.get(f"/v1/jobs/{job_id}/feedback")
    assert listed.status_code == 200
    assert listed.json() == {"data": [made, second.json(), third.json()]}  # oldest first
    assert stored(db, job_id) == 3
    # Another job's list is its own.
    assert client.http.get(f"/v1/jobs/{ended_job(client)}/feedback").json() == {"data": []}


def test_concurrent_replays_make_one(client: Client, db: psycopg.Connection[Any]) -> None:
    job_id = ended_job(client)
    body = {"id": new_id("same"), "name": "rating", "value": 3}
    start = threading.Barrier(16)

    def send(i: int) -> httpx.Response:
        start.wait()
        return give(client, job_id, {**body, "comment": f"sender {i}"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(send, range(16)))
    assert sorted(a.status_code for a in answers) == [200] * 15 + [201], [
        a.text for a in answers if a.status_code not in (200, 201)
    ]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert stored(db, job_id) == 1
    # Distinct ids at the same moment: each one recorded.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda i: give(client, job_id, {"name": "n", "value": i}), range(8)))
    assert [a.status_code for a in made] == [201] * 8
    assert stored(db, job_id) == 9


def test_an_id_given_on_another_job_is_a_conflict(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    first, second = ended_job(client), ended_job(client)
    body = {"id": new_id("one-id"), "name": "rating", "value": 1}
    assert give(client, first, body).status_code == 201
    reused = give(client, second, body)
    assert reused.status_code == 409, reused.text
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["code"] == "invalid_request"
    assert (stored(db, first), stored(db, second)) == (1, 0)


def test_another_tenants_job_is_not_found(
    make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    owner, other = make_client(), make_client()
    job_id = ended_job(owner)
    assert give(owner, job_id, {"name": "rating", "value": 5, "id": "shared"}).status_code == 201
    for job in (job_id, str(uuid.uuid4()), "not-a-uuid"):
        refused = give(other, job, {"name": "rating", "value": 1})
        assert refused.status_code == 404, refused.text
        assert refused.json()["code"] == "not_found"
        listed = other.http.get(f"/v1/jobs/{job}/feedback")
        assert listed.status_code == 404 and listed.json()["code"] == "not_found"
    # Ids are per tenant: the other tenant may use the same one on its own job.
    assert give(other, ended_job(other), {"name": "r", "value": 2, "id": "shared"}).status_code == (
        201
    )
    assert stored(db, job_id) == 1
    assert owner.http.get(f"/v1/jobs/{job_id}/feedback").json()["data"][0]["value"] == 5


NUL, SURROGATE = "\x00", "\ud800"
HOSTILE: list[tuple[str, str]] = [
    ("NaN", '{"name": "rating", "value": NaN}'),
    ("Infinity", '{"name": "rating", "value": Infinity}'),
    ("-Infinity", '{"name": "rating", "value": -Infinity}'),
    ("overflowing float", '{"name": "rating", "value": 1e400}'),
    ("huge number", '{"name": "rating", "value": 10000000000000001}'),
    ("huge integer", json.dumps({"name": "rating", "value": 10**400 // 10**380})),
    ("null value", '{"name": "rating", "value": null}'),
    ("list value", '{"name": "rating", "value": [1]}'),
    ("object value", '{"name": "rating", "value": {"a": 1}}'),
    ("missing value", '{"name": "rating"}'),
    ("long string value", json.dumps({"name": "r", "value": "x" * 10_001})),
    ("long comment", json.dumps({"name": "r", "value": 1, "comment": "x" * 10_001})),
    ("empty name", '{"name": "", "value": 1}'),
    ("long name", json.dumps({"name": "n" * 101, "value": 1})),
    ("name with markup", '{"name": "<b>x</b>", "value": 1}'),
    ("name with a space", '{"name": "a b", "value": 1}'),
    ("name with a newline", '{"name": "a\\nb", "value": 1}'),
    ("non-ASCII name", '{"name": "\\u00e9t\\u00e9", "value": 1}'),
    ("name not a string", '{"name": 7, "value": 1}'),
    ("empty id", '{"name": "r", "value": 1, "id": ""}'),
    ("long id", json.dumps({"name": "r", "value": 1, "id": "i" * 201})),
    ("id with a space", '{"name": "r", "value": 1, "id": "a b"}'),
    ("unknown source", '{"name": "r", "value": 1, "source": "admin"}'),
    ("unknown field", '{"name": "r", "value": 1, "score": 2}'),
    ("NUL in a comment", json.dumps({"name": "r", "value": 1, "comment": f"a{NUL}b"})),
    ("NUL in a value", json.dumps({"name": "r", "value": f"a{NUL}b"})),
    ("lone surrogate in a value", json.dumps({"name": "r", "value": f"a{SURROGATE}b"})),
    ("lone surrogate in an id", json.dumps({"name": "r", "value": 1, "id": SURROGATE})),
    ("lone surrogate in a key", json.dumps({"name": "r", "value": 1, SURROGATE: 1})),
    ("not an object", "[1, 2]"),
    ("not JSON", "{name: r}"),
]


@pytest.mark.parametrize("raw", [raw for _, raw in HOSTILE], ids=[why for why, _ in HOSTILE])
def test_hostile_input_is_refused_and_nothing_written(
    client: Client, db: psycopg.Connection[Any], raw: str
) -> None:
    job_id = ended_job(client)
    refused = client.http.post(
        f"/v1/jobs/{job_id}/feedback",
        content=raw.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "invalid_request"
    assert stored(db, job_id) == 0


def test_values_at_the_limits_are_kept(client: Client) -> None:
    job_id = ended_job(client)
    kept: list[dict[str, Any]] = [
        {"name": "n" * 100, "value": "x" * 10_000, "comment": "c" * 10_000, "id": "i" * 200},
        {"name": "a.b:c/d-e_f", "value": -1e15, "id": "urn:x/y?z=1&w=#2"},
        {"name": "zero", "value": 0},
        {"name": "false", "value": False},
        {"name": "int", "value": 1_000_000_000_000_000},
        {"name": "text", "value": "<b>é ✓</b>"},
    ]
    for body in kept:
        made = give(client, job_id, body)
        assert made.status_code == 201, made.text
        assert {k: made.json()[k] for k in body} == body
        assert type(made.json()["value"]) is type(body["value"])


def test_a_job_holds_at_most_1000(client: Client, db: psycopg.Connection[Any]) -> None:
    job_id = ended_job(client)
    assert give(client, job_id, {"name": "first", "value": 1, "id": "kept"}).status_code == 201
    db.execute(
        "INSERT INTO feedback (tenant_id, id, job_id, name, value)"
        " SELECT tenant_id, 'bulk-' || n, id, 'rating', to_jsonb(n)"
        " FROM jobs, generate_series(1, 998) AS n WHERE id = %s",
        (job_id,),
    )
    assert give(client, job_id, {"name": "last", "value": 1}).status_code == 201  # 1000th
    over = give(client, job_id, {"name": "over", "value": 1})
    assert over.status_code == 422, over.text
    assert over.json()["code"] == "invalid_request" and "1000" in over.json()["detail"]
    assert stored(db, job_id) == 1000
    # A replay is still answered: it writes nothing.
    assert give(client, job_id, {"name": "first", "value": 1, "id": "kept"}).status_code == 200
    assert len(client.http.get(f"/v1/jobs/{job_id}/feedback").json()["data"]) == 1000


def _prompt_job(client: Client, name: str, version: int) -> str:
    response = client.submit(
        {"prompt": {"name": name, "version": version, "variables": {"x": unique("fb")}}}
    )
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"])
    assert job["status"] == "succeeded", job
    return str(job["id"])


def test_stats_aggregate_feedback_per_version(make_client: Callable[..., Client]) -> None:
    client, other = make_client(), make_client()
    name = unique_name()
    create(client, name, version_body("A {{x}}"))
    create(client, name, version_body("B {{x}}"))
    a, b, c = (_prompt_job(client, name, v) for v in (1, 1, 2))
    given: list[tuple[str, dict[str, Any]]] = [
        (a, {"name": "rating", "value": 4}),
        (b, {"name": "rating", "value": 5}),
        (a, {"name": "helpful", "value": True}),
        (b, {"name": "helpful", "value": False}),
        (b, {"name": "helpful", "value": False}),
        (a, {"name": "verdict", "value": "good"}),
        (b, {"name": "verdict", "value": "good"}),
        (b, {"name": "verdict", "value": "bad"}),
        (c, {"name": "rating", "value": 2}),
        (c, {"name": "rating", "value": 2.5}),
        (c, {"name": "helpful", "value": True}),
        # Numbers and strings under one name: the mean of the numbers, the strings counted.
        (c, {"name": "score", "value": 1}),
        (c, {"name": "score", "value": 0}),
        (c, {"name": "score", "value": "n/a"}),
    ]
    for job_id, body in given:
        assert give(client, job_id, body).status_code == 201
    # 25 distinct strings, "common" three times: the 20 most given are listed.
    for n in range(24):
        assert give(client, c, {"name": "tag", "value": f"tag-{n:02d}"}).status_code == 201
    for _ in range(3):
        assert give(client, c, {"name": "tag", "value": "common"}).status_code == 201
    # Another tenant's prompt of the same name and its feedback stay out.
    create(other, name, version_body("A {{x}}"))
    assert give(other, _prompt_job(other, name, 1), {"name": "rating", "value": 1}).status_code == (
        201
    )

    stats = client.http.get(f"/v1/prompts/{name}/stats")
    assert stats.status_code == 200, stats.text
    one, two = stats.json()["versions"]
    assert (one["version"], one["jobs"], two["version"], two["jobs"]) == (1, 2, 2, 1)
    assert one["feedback"] == {
        "rating": {"count": 2, "mean": 4.5},
        "helpful": {"count": 3, "mean": round(1 / 3, 6)},
        "verdict": {"count": 3, "values": {"good": 2, "bad": 1}},
    }
    tag = two["feedback"].pop("tag")
    assert two["feedback"] == {
        "rating": {"count": 2, "mean": 2.25},
        "helpful": {"count": 1, "mean": 1.0},
        "score": {"count": 3, "mean": 0.5, "values": {"n/a": 1}},
    }
    assert tag["count"] == 27 and "mean" not in tag
    assert tag["values"]["common"] == 3
    assert list(tag["values"]) == ["common"] + [f"tag-{n:02d}" for n in range(19)]
    # The other fields are as before.
    assert one["succeeded"] == 2 and one["failed_by_code"] == {} and float(one["cost_usd"]) > 0
    assert set(one) >= {"cache_hits", "checks_passed", "latency_ms", "failed"}
    other_stats = other.http.get(f"/v1/prompts/{name}/stats").json()["versions"]
    assert other_stats[0]["feedback"] == {"rating": {"count": 1, "mean": 1.0}}
