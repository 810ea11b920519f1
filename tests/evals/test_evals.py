"""Evals through real API and worker processes and the fake provider: two prompt
versions over 20 items where one answers worse on known items (pass rates, scores,
regressions and costs exactly as the price table says), candidates pinned at create,
a judge scorer whose calls are priced, budgeted and cached jobs, and another tenant's
eval answering 404."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg

from aijobs.checks.judge import JUDGE_SYSTEM
from tests.conftest import Client
from tests.evals.support import (
    LIST_PRICE,
    call_cost,
    dataset,
    get,
    name,
    prompt,
    results,
    start,
    wait_ended,
)
from tests.fake_openai import FakeOpenAI
from tests.helpers import unique

BAD = {3, 7, 12}  # the items version 2 answers wrongly


def _comparison_items() -> list[dict[str, Any]]:
    """Each item's `style` is empty but on the BAD items, where it carries a directive:
    version 1 puts it in its system message (the fake answers the last user message),
    version 2 in the user message, so the fake answers "nope" there."""
    items = []
    for i in range(20):
        q = unique(f"question {i}")
        style = " [reply:nope]" if i in BAD else ""
        items.append({"variables": {"q": q, "style": style}, "expected": f"echo: {q}"})
    return items


def test_two_versions_compared_over_twenty_items(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    prompt_name = name("qa")
    prompt(
        client,
        prompt_name,
        [{"role": "system", "content": "Tone:{{style}}"}, {"role": "user", "content": "{{q}}"}],
    )
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}{{style}}"}])
    label = client.http.put(f"/v1/prompts/{prompt_name}/labels/production", json={"version": 1})
    assert label.status_code == 200, label.text
    items = _comparison_items()
    dataset_name, item_ids = dataset(client, items)

    started = start(
        client,
        {
            "dataset": dataset_name,
            "candidates": [
                {"prompt": {"name": prompt_name, "label": "production"}},
                {"prompt": {"name": prompt_name, "version": 2}},
            ],
            "scorers": [{"type": "equals_expected"}, {"type": "regex", "pattern": "^echo: "}],
        },
    )
    # Pinned at create: moving the label now changes nothing for this eval.
    moved = client.http.put(f"/v1/prompts/{prompt_name}/labels/production", json={"version": 2})
    assert moved.status_code == 200
    assert started["status"] == "running" and started["tier"] == "standard"
    assert started["progress"] == {"total": 40, "done": 0}
    assert started["candidates"][0]["prompt"] == {
        "name": prompt_name,
        "version": 1,
        "label": "production",
    }
    assert started["candidates"][1]["prompt"] == {"name": prompt_name, "version": 2}
    assert [s["key"] for s in started["scorers"]] == ["equals_expected", "regex#1"]

    done = wait_ended(client, started["id"], items_limit=20)
    assert done["status"] == "completed", done["progress"]
    assert done["progress"] == {"total": 40, "done": 40}
    assert done["finished_at"] is not None
    first, second = done["candidates"]
    assert (first["jobs"], first["succeeded"], first["pass_rate"]) == (20, 20, 1.0)
    assert first["scores"] == {"equals_expected": 1.0, "regex#1": 1.0}
    assert (second["jobs"], second["succeeded"], second["pass_rate"]) == (20, 20, 0.85)
    assert second["scores"] == {"equals_expected": 0.85, "regex#1": 0.85}
    assert first["model"] == second["model"] == "openai/gpt-4o-mini"
    assert first["latency_ms"]["p50"] is not None and second["latency_ms"]["p95"] is not None
    expected_regressions = [{"item_id": item_ids[i], "candidates": [1]} for i in sorted(BAD)]
    assert done["regressions"] == expected_regressions
    assert done["regressions_total"] == len(BAD)
    assert done["improvements"] == []

    # Costs, from the price table and the fake's one-token-a-word count.
    cost_one = sum(
        (
            call_cost(
                ["Tone:" + item["variables"]["style"], item["variables"]["q"]],
                item["expected"],
                LIST_PRICE,
            )
            for item in items
        ),
        Decimal(0),
    )
    cost_two = sum(
        (
            call_cost(
                [item["variables"]["q"] + item["variables"]["style"]],
                "nope" if i in BAD else item["expected"],
                LIST_PRICE,
            )
            for i, item in enumerate(items)
        ),
        Decimal(0),
    )
    assert Decimal(first["cost_usd"]) == cost_one
    assert Decimal(second["cost_usd"]) == cost_two
    assert Decimal(done["cost_usd"]) == cost_one + cost_two

    # Per item: each candidate's job, output and verdict; each job ran once.
    per_item = results(done)
    assert [item["item_id"] for item in done["items"]] == item_ids
    for i, (one, two) in enumerate(per_item):
        q = items[i]["variables"]["q"]
        assert one["output"] == f"echo: {q}" and one["passed"] is True
        assert one["scores"] == {"equals_expected": 1.0, "regex#1": 1.0}
        assert two["passed"] is (i not in BAD)
        assert two["output"] == ("nope" if i in BAD else f"echo: {q}")
        if i in BAD:
            assert fake_openai.count(q) == 1
            assert fake_openai.count(q + " [reply:nope]") == 1
        else:
            assert fake_openai.count(q) == 2

    # The eval's jobs are ordinary jobs of the tenant: a batch of them, priority batch,
    # each naming the pinned version.
    job = client.http.get(f"/v1/jobs/{per_item[0][0]['job_id']}").json()
    assert job["batch_id"] == done["batch_id"] and job["priority"] == "batch"
    assert job["prompt"] == {"name": prompt_name, "version": 1}
    batch = client.http.get(f"/v1/batches/{done['batch_id']}").json()
    assert batch["counts"]["succeeded"] == 40 and batch["metadata"] == {"eval_id": done["id"]}

    # Items page by page.
    page = get(client, done["id"], items_limit=8)
    assert len(page["items"]) == 8 and page["items_next_cursor"]
    last = get(client, done["id"], items_limit=8, items_cursor=page["items_next_cursor"])
    assert [i["item_id"] for i in last["items"]] == item_ids[8:16]
    listed = client.http.get("/v1/evals").json()["data"]
    assert done["id"] in [e["id"] for e in listed]


def _judge_cost(rubric: str, output: str, score: float) -> Decimal:
    reply = json.dumps({"score": score, "reason": f"scored {score} by the fake judge"})
    user = f"Rubric:\n{rubric}\n\nOutput to score:\n{output}"
    return call_cost([JUDGE_SYSTEM, user], reply, LIST_PRICE)


def test_a_judge_scorer_runs_priced_budgeted_and_cached_jobs(
    make_client: Callable[..., Client], fake_openai: FakeOpenAI
) -> None:
    client = make_client(daily_budget=Decimal("5"))
    prompt_name = name("j")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}"}])
    scores = [0.9, 0.9, 0.2, 0.9, 0.2, 0.2]
    qs = [unique(f"[score:{s}] answer {i}") for i, s in enumerate(scores)]
    dataset_name, _ = dataset(client, [{"variables": {"q": q}} for q in qs])
    rubric = "Is the answer polite?"
    body = {
        "dataset": dataset_name,
        "candidates": [{"prompt": {"name": prompt_name, "version": 1}}],
        "scorers": [
            {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": rubric, "threshold": 0.5},
            {"type": "min_chars", "value": 5},
        ],
    }
    done = wait_ended(client, start(client, body)["id"])
    assert done["status"] == "completed", done["progress"]
    [candidate] = done["candidates"]
    assert candidate["pass_rate"] == 0.5
    assert candidate["scores"] == {"judge#0": round(sum(scores) / 6, 4), "min_chars#1": 1.0}
    assert candidate["judge_jobs"] == 6

    outputs = [f"echo: {q}" for q in qs]
    own = sum((call_cost([q], f"echo: {q}", LIST_PRICE) for q in qs), Decimal(0))
    judged = sum(
        (_judge_cost(rubric, out, s) for out, s in zip(outputs, scores, strict=True)),
        Decimal(0),
    )
    assert Decimal(candidate["cost_usd"]) == own + judged
    # Charged to the tenant like any job: its usage and its budget's spend say so.
    usage = client.http.get("/v1/usage").json()
    assert Decimal(usage["total"]["cost_usd"]) == own + judged
    assert usage["total"]["calls"] == 12
    assert Decimal(usage["budget"]["daily"]["spent"]) == own + judged

    for item, s in zip(done["items"], scores, strict=True):
        [result] = item["results"]
        assert result["scores"]["judge#0"] == s and result["passed"] is (s >= 0.5)
        [judge_id] = result["judge_job_ids"]
        judge = client.http.get(f"/v1/jobs/{judge_id}").json()
        assert judge["status"] == "succeeded" and judge["metadata"]["eval_id"] == done["id"]
        assert judge["result"]["parsed"]["score"] == s
    judge_calls = sum(
        fake_openai.count(f"Rubric:\n{rubric}\n\nOutput to score:\n{o}") for o in outputs
    )
    assert judge_calls == 6

    # The same eval again: every job, the judges' too, answered by the cache, at no cost.
    again = wait_ended(client, start(client, body)["id"])
    assert again["status"] == "completed"
    [rerun] = again["candidates"]
    assert rerun["cost_usd"] == "0" and rerun["cache_hits"] == 6
    assert rerun["pass_rate"] == 0.5 and rerun["scores"] == candidate["scores"]
    assert client.http.get("/v1/usage").json()["total"]["calls"] == 12
    judge_calls = sum(
        fake_openai.count(f"Rubric:\n{rubric}\n\nOutput to score:\n{o}") for o in outputs
    )
    assert judge_calls == 6


def test_another_tenants_eval_is_404(make_client: Callable[..., Client]) -> None:
    owner, other = make_client(), make_client()
    prompt_name = name("iso")
    prompt(owner, prompt_name, [{"role": "user", "content": "{{q}}"}])
    dataset_name, _ = dataset(owner, [{"variables": {"q": unique("iso")}}])
    body = {"dataset": dataset_name, "candidates": [{"prompt": {"name": prompt_name}}]}
    started = start(
        owner, {**body, "candidates": [{"prompt": {"name": prompt_name, "version": 1}}]}
    )

    for response in (
        other.http.get(f"/v1/evals/{started['id']}"),
        other.http.post(f"/v1/evals/{started['id']}/cancel"),
        other.http.get("/v1/evals/not-a-uuid"),
        other.http.post("/v1/evals", json=body),  # the owner's dataset
    ):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
    assert other.http.get("/v1/evals").json()["data"] == []
    assert wait_ended(owner, started["id"])["status"] == "completed"
