"""What the eval tests share: prompts, datasets and items over HTTP, starting and
waiting for an eval, and the fake provider's token counts (one token a word)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import Client
from tests.fake_openai import words
from tests.helpers import wait_until

MINI = "openai/gpt-4o-mini"
MILLION = Decimal(1_000_000)
# USD per 1M tokens of openai/gpt-4o-mini: list, and the batch tier's.
LIST_PRICE = (Decimal("0.15"), Decimal("0.60"))
BATCH_PRICE = (Decimal("0.075"), Decimal("0.30"))
ENDED = ("completed", "cancelled")


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def cost(input_tokens: int, output_tokens: int, price: tuple[Decimal, Decimal]) -> Decimal:
    return (input_tokens * price[0] + output_tokens * price[1]) / MILLION


def call_cost(messages: list[str], reply: str, price: tuple[Decimal, Decimal]) -> Decimal:
    """What the fake charges for a call: a token per word of each message, of the reply."""
    return cost(sum(words(m) for m in messages), words(reply), price)


def prompt(
    client: Client, prompt_name: str, messages: list[dict[str, str]], model: str = MINI
) -> int:
    body = {"messages": messages, "model": model}
    response = client.http.post(f"/v1/prompts/{prompt_name}/versions", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["version"])


def dataset(client: Client, items: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """A new dataset with these items: its name and the items' ids, in order."""
    dataset_name = name("ds")
    made = client.http.post("/v1/datasets", json={"name": dataset_name})
    assert made.status_code == 201, made.text
    ids = []
    for item in items:
        added = client.http.post(f"/v1/datasets/{dataset_name}/items", json=item)
        assert added.status_code == 201, added.text
        ids.append(added.json()["id"])
    return dataset_name, ids


def start(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.http.post("/v1/evals", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/evals/{response.json()['id']}"
    started: dict[str, Any] = response.json()
    return started


def get(client: Client, eval_id: str, **params: Any) -> dict[str, Any]:
    response = client.http.get(f"/v1/evals/{eval_id}", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def wait_ended(client: Client, eval_id: str, timeout_s: float = 90, **params: Any) -> Any:
    seen: dict[str, Any] = {}

    def ended() -> dict[str, Any] | None:
        seen.update(get(client, eval_id, **params))
        return dict(seen) if seen["status"] in ENDED else None

    return wait_until(ended, timeout_s, lambda: f"the eval to end: {seen.get('progress')}")


def results(found: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The page's results, per item, per candidate."""
    return [item["results"] for item in found["items"]]


def tenant_rows(db: psycopg.Connection[Any], client: Client) -> dict[str, int]:
    """What a tenant has written: evals, batches, jobs."""
    row = db.execute(
        """SELECT (SELECT count(*) FROM evals e WHERE e.tenant_id = t.id),
                  (SELECT count(*) FROM batches b WHERE b.tenant_id = t.id),
                  (SELECT count(*) FROM jobs j WHERE j.tenant_id = t.id)
           FROM tenants t WHERE t.name = %s""",
        (client.tenant,),
    ).fetchone()
    assert row is not None
    return {"evals": row[0], "batches": row[1], "jobs": row[2]}
