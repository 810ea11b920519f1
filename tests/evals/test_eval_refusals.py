"""POST /v1/evals refuses what it cannot run, with the right code, and writes nothing:
no eval, no batch, no job."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import Client
from tests.evals.support import dataset, name, prompt, tenant_rows
from tests.helpers import unique


def test_refusals_write_nothing(client: Client, db: psycopg.Connection[Any]) -> None:
    prompt_name = name("r")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}} {{tone}}"}])
    sim_prompt = name("sim")
    prompt(client, sim_prompt, [{"role": "user", "content": "{{q}}"}], model="sim/echo")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}! {{tone}}"}])
    split = client.http.put(
        f"/v1/prompts/{prompt_name}/labels/canary", json={"split": {"1": 50, "2": 50}}
    )
    assert split.status_code == 200, split.text
    good_items = [{"variables": {"q": unique("q"), "tone": "dry"}, "expected": "x"}] * 3
    full, _ = dataset(client, good_items)
    # The first bad item is the third: its variables do not fit the template.
    mixed, mixed_ids = dataset(
        client,
        [
            {"variables": {"q": "a", "tone": "dry"}, "expected": "x"},
            {"messages": [{"role": "user", "content": "b"}], "expected": "y"},
            {"variables": {"q": "c"}, "expected": "z"},
            {"variables": {"q": "d", "tone": "dry", "extra": "e"}},
        ],
    )
    no_expected, no_expected_ids = dataset(
        client,
        [
            {"variables": {"q": "a", "tone": "dry"}, "expected": "x"},
            {"variables": {"q": "b", "tone": "dry"}},
        ],
    )
    sim_items, _ = dataset(client, [{"variables": {"q": "a"}}])
    empty, _ = dataset(client, [])
    before = tenant_rows(db, client)
    one = [{"prompt": {"name": prompt_name, "version": 1}}]

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"dataset": name("missing"), "candidates": one}, 404, "not_found"),
        ({"dataset": empty, "candidates": one}, 422, "invalid_request"),
        ({"dataset": full, "candidates": one * 6}, 422, "invalid_request"),
        ({"dataset": full, "candidates": []}, 422, "invalid_request"),
        (
            {"dataset": full, "candidates": [{"prompt": {"name": name("nope")}}]},
            422,
            "unknown_prompt",
        ),
        (
            {"dataset": full, "candidates": [{"prompt": {"name": prompt_name, "version": 9}}]},
            422,
            "unknown_prompt",
        ),
        (
            {"dataset": full, "candidates": [{"prompt": {"name": prompt_name, "label": "gone"}}]},
            422,
            "unknown_prompt",
        ),
        (
            {"dataset": full, "candidates": [{"prompt": {"name": prompt_name, "label": "canary"}}]},
            422,
            "unknown_prompt",
        ),
        (
            {
                "dataset": full,
                "candidates": [
                    {"prompt": {"name": prompt_name, "version": 1}, "model": "openai/nonexistent"}
                ],
            },
            422,
            "unknown_model",
        ),
        (
            {"dataset": full, "candidates": one, "scorers": [{"type": "bogus"}]},
            422,
            "invalid_request",
        ),
        (
            {
                "dataset": full,
                "candidates": one,
                "scorers": [{"type": "regex", "pattern": "(a)\\1"}],
            },
            422,
            "invalid_request",
        ),
        (
            {
                "dataset": full,
                "candidates": one,
                "scorers": [{"type": "regex", "pattern": "a", "on": "input"}],
            },
            422,
            "invalid_request",
        ),
        (
            {
                "dataset": full,
                "candidates": one,
                "scorers": [{"type": "equals_expected"}, {"type": "equals_expected"}],
            },
            422,
            "invalid_request",
        ),
        (
            {
                "dataset": full,
                "candidates": one,
                "scorers": [{"type": "judge", "model": "openai/unknown-judge", "rubric": "r"}],
            },
            422,
            "unknown_model",
        ),
        ({"dataset": full, "candidates": one, "tier": "express"}, 422, "invalid_request"),
        ({"dataset": full, "candidates": one, "surprise": True}, 422, "invalid_request"),
        (
            {
                "dataset": sim_items,
                "candidates": [{"prompt": {"name": sim_prompt, "version": 1}}],
                "tier": "batch",
            },
            422,
            "unsupported",
        ),
        (
            {
                "dataset": full,
                "candidates": one,
                "tier": "batch",
                "scorers": [{"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "r"}],
            },
            422,
            "unsupported",
        ),
    ]
    for body, status, code in cases:
        response = client.http.post("/v1/evals", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code, (body, response.json())

    # Items that do not fit: the first bad one is named.
    misfit = client.http.post("/v1/evals", json={"dataset": mixed, "candidates": one})
    assert misfit.status_code == 422, misfit.text
    assert misfit.json()["code"] == "invalid_request"
    assert misfit.json()["item_id"] == mixed_ids[2] and mixed_ids[2] in misfit.json()["detail"]
    lacking = client.http.post(
        "/v1/evals",
        json={"dataset": no_expected, "candidates": one, "scorers": [{"type": "equals_expected"}]},
    )
    assert lacking.status_code == 422, lacking.text
    assert lacking.json()["item_id"] == no_expected_ids[1]

    assert tenant_rows(db, client) == before == {"evals": 0, "batches": 0, "jobs": 0}
    # And what was refused can run once fixed.
    fine = client.http.post("/v1/evals", json={"dataset": full, "candidates": one})
    assert fine.status_code == 202, fine.text


def test_a_tenant_over_budget_gets_402_and_nothing_is_written(
    make_client: Callable[..., Client], db: psycopg.Connection[Any]
) -> None:
    client = make_client(daily_budget=Decimal("0"))
    prompt_name = name("b")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}"}])
    dataset_name, _ = dataset(client, [{"variables": {"q": unique("b")}}])
    response = client.http.post(
        "/v1/evals",
        json={"dataset": dataset_name, "candidates": [{"prompt": {"name": prompt_name}}]},
    )
    assert response.status_code == 422 and response.json()["code"] == "unknown_prompt"
    label = client.http.put(f"/v1/prompts/{prompt_name}/labels/production", json={"version": 1})
    assert label.status_code == 200
    over = client.http.post(
        "/v1/evals",
        json={"dataset": dataset_name, "candidates": [{"prompt": {"name": prompt_name}}]},
    )
    assert over.status_code == 402, over.text
    assert over.json()["code"] == "budget_exceeded"
    assert tenant_rows(db, client) == {"evals": 0, "batches": 0, "jobs": 0}
