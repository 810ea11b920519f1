"""Datasets and their items over HTTP: create (a name twice is 409), list, items in
order with a cursor, an item made from a job (a prompt job's variables read back, its
result as the expected answer), hostile bodies refused with nothing written, and
another tenant's datasets and jobs answering 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from tests.conftest import Client
from tests.evals.support import MINI, dataset, name, prompt
from tests.helpers import chat, unique


def _items(client: Client, dataset_name: str, **params: Any) -> dict[str, Any]:
    response = client.http.get(f"/v1/datasets/{dataset_name}/items", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_datasets_are_created_listed_and_unique_by_name(client: Client) -> None:
    first = name("ds")
    made = client.http.post("/v1/datasets", json={"name": first, "description": "bad answers"})
    assert made.status_code == 201, made.text
    assert made.headers["location"] == f"/v1/datasets/{first}"
    assert made.json()["name"] == first and made.json()["items"] == 0
    assert made.json()["description"] == "bad answers"

    again = client.http.post("/v1/datasets", json={"name": first})
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["code"] == "invalid_request"

    second = name("ds")
    assert client.http.post("/v1/datasets", json={"name": second}).status_code == 201
    listed = client.http.get("/v1/datasets", params={"limit": 1})
    assert listed.status_code == 200
    page = listed.json()
    assert len(page["data"]) == 1 and page["next_cursor"]
    rest = client.http.get("/v1/datasets", params={"cursor": page["next_cursor"]}).json()
    names = [d["name"] for d in page["data"] + rest["data"]]
    assert names == sorted([first, second]) and rest["next_cursor"] is None
    assert client.http.get(f"/v1/datasets/{first}").json()["name"] == first


def test_items_are_kept_in_order_and_paged(client: Client) -> None:
    dataset_name, ids = dataset(
        client,
        [
            {"variables": {"q": "one"}, "expected": "echo: one"},
            {"messages": [{"role": "user", "content": "two"}], "expected": {"n": 2}},
            {"variables": {"q": "three"}, "metadata": {"source": "review"}},
        ],
    )
    first = _items(client, dataset_name, limit=2)
    assert [item["id"] for item in first["data"]] == ids[:2]
    assert first["data"][0]["variables"] == {"q": "one"}
    assert first["data"][0]["messages"] is None
    assert first["data"][1]["messages"] == [{"role": "user", "content": "two"}]
    assert first["data"][1]["expected"] == {"n": 2}
    second = _items(client, dataset_name, limit=2, cursor=first["next_cursor"])
    assert [item["id"] for item in second["data"]] == ids[2:]
    assert second["data"][0]["expected"] is None
    assert second["data"][0]["metadata"] == {"source": "review"}
    assert second["next_cursor"] is None
    assert client.http.get(f"/v1/datasets/{dataset_name}").json()["items"] == 3
    bad_cursor = client.http.get(f"/v1/datasets/{dataset_name}/items", params={"cursor": "x"})
    assert bad_cursor.status_code == 422


def test_hostile_items_are_refused_and_nothing_is_written(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    dataset_name, _ = dataset(client, [])
    refused = [
        {"variables": {"q": "a"}, "messages": [{"role": "user", "content": "a"}]},
        {"expected": "only"},
        {"variables": {"q": "a"}, "surprise": 1},
        {"variables": {"q": "a\u0000b"}},
        {"variables": {"bad name": "a"}},
        {"variables": {"q": 3}},
        {"messages": [{"role": "tool", "content": "a"}]},
        {"messages": []},
        {"variables": {"q": "x" * 300_000}},
        {"from_job": "not-a-uuid", "extra": True},
        [1, 2],
    ]
    for body in refused:
        response = client.http.post(f"/v1/datasets/{dataset_name}/items", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "invalid_request"
    long_name = client.http.post("/v1/datasets", json={"name": "x" * 101})
    assert long_name.status_code == 422
    slash = client.http.post("/v1/datasets", json={"name": "a/b"})
    assert slash.status_code == 422
    count = db.execute(
        """SELECT count(*) FROM dataset_items i JOIN datasets d ON d.id = i.dataset_id
           JOIN tenants t ON t.id = d.tenant_id WHERE t.name = %s""",
        (client.tenant,),
    ).fetchone()
    assert count == (0,)
    assert client.http.get(f"/v1/datasets/{dataset_name}").json()["items"] == 0


def test_an_item_from_a_job(client: Client) -> None:
    prompt_name = name("p")
    prompt(
        client,
        prompt_name,
        [
            {"role": "system", "content": "Answer as {{persona}}, briefly."},
            {"role": "user", "content": "Q: {{question}} (from {{persona}})"},
        ],
    )
    variables = {"persona": "a pirate", "question": unique("where is the {{gold}}?")}
    submitted = client.submit(
        {"prompt": {"name": prompt_name, "version": 1, "variables": variables}}
    )
    assert submitted.status_code == 202, submitted.text
    job = client.wait(submitted.json()["id"])
    assert job["status"] == "succeeded", job
    dataset_name, _ = dataset(client, [])

    made = client.http.post(f"/v1/datasets/{dataset_name}/items", json={"from_job": job["id"]})
    assert made.status_code == 201, made.text
    item = made.json()
    assert item["variables"] == variables
    assert item["messages"] is None
    assert item["expected"] == job["result"]["content"]
    assert item["source_job_id"] == job["id"]

    # The answer it should have given, as the user said.
    corrected = client.http.post(
        f"/v1/datasets/{dataset_name}/items",
        json={"from_job": job["id"], "expected": "Arr, buried on the island."},
    )
    assert corrected.status_code == 201, corrected.text
    assert corrected.json()["expected"] == "Arr, buried on the island."
    assert corrected.json()["variables"] == variables

    # A job that named no prompt gives its messages.
    plain = client.submit(chat(unique("plain question")))
    plain_job = client.wait(plain.json()["id"])
    from_plain = client.http.post(
        f"/v1/datasets/{dataset_name}/items", json={"from_job": plain_job["id"]}
    ).json()
    assert from_plain["variables"] is None
    assert from_plain["messages"] == [
        {"role": "user", "content": plain_job["result"]["content"].removeprefix("echo: ")}
    ]
    assert from_plain["expected"] == plain_job["result"]["content"]
    assert client.http.get(f"/v1/datasets/{dataset_name}").json()["items"] == 3


def test_another_tenants_datasets_and_jobs_are_404(
    make_client: Callable[..., Client],
) -> None:
    owner, other = make_client(), make_client()
    dataset_name, _ = dataset(owner, [{"variables": {"q": "a"}}])
    job = owner.submit(chat(unique("owner's"), model=MINI)).json()
    other_dataset, _ = dataset(other, [])

    assert other.http.get(f"/v1/datasets/{dataset_name}").status_code == 404
    assert other.http.get(f"/v1/datasets/{dataset_name}/items").status_code == 404
    added = other.http.post(f"/v1/datasets/{dataset_name}/items", json={"variables": {"q": "b"}})
    assert added.status_code == 404 and added.json()["code"] == "not_found"
    stolen = other.http.post(f"/v1/datasets/{other_dataset}/items", json={"from_job": job["id"]})
    assert stolen.status_code == 404 and stolen.json()["code"] == "not_found"
    assert dataset_name not in [d["name"] for d in other.http.get("/v1/datasets").json()["data"]]
    # The owner's dataset is untouched; the same name is free for the other tenant.
    assert owner.http.get(f"/v1/datasets/{dataset_name}").json()["items"] == 1
    assert other.http.post("/v1/datasets", json={"name": dataset_name}).status_code == 201
