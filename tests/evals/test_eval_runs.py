"""How an eval's jobs run: at tier batch through the provider's batch API (the fake's
OpenAI Batch) at the batch price, again at no cost (the cache answers every job), and
cancelled mid-way (queued jobs cancelled, what finished kept, nothing scored after)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import Client
from tests.evals.support import (
    BATCH_PRICE,
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
from tests.helpers import unique, wait_until


def test_an_eval_at_tier_batch_then_again_from_the_cache(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    prompt_name = name("b")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}"}])
    prompt(client, prompt_name, [{"role": "user", "content": "Briefly: {{q}}"}])
    qs = [unique(f"batch question {i}") for i in range(4)]
    dataset_name, _ = dataset(
        client, [{"variables": {"q": q}, "expected": f"echo: {q}"} for q in qs]
    )
    body = {
        "dataset": dataset_name,
        "candidates": [
            {"prompt": {"name": prompt_name, "version": 1}},
            {"prompt": {"name": prompt_name, "version": 2}},
        ],
        "scorers": [{"type": "equals_expected"}],
        "tier": "batch",
    }
    made = fake_openai.batches.created["openai"]
    started = start(client, body)
    assert started["tier"] == "batch"
    done = wait_ended(client, started["id"])
    assert done["status"] == "completed", done["progress"]
    first, second = done["candidates"]
    assert first["pass_rate"] == 1.0 and second["pass_rate"] == 0.0  # "echo: Briefly: ..."
    assert done["improvements"] == [] and done["regressions_total"] == 4
    assert Decimal(first["cost_usd"]) == sum(
        (call_cost([q], f"echo: {q}", BATCH_PRICE) for q in qs), Decimal(0)
    )
    assert Decimal(second["cost_usd"]) == sum(
        (call_cost([f"Briefly: {q}"], f"echo: Briefly: {q}", BATCH_PRICE) for q in qs),
        Decimal(0),
    )
    assert fake_openai.batches.created["openai"] > made
    job_ids = [r["job_id"] for item in results(done) for r in item]
    in_batches = db.execute(
        """SELECT count(DISTINCT job_id) FROM attempts
           WHERE job_id = ANY(%s::uuid[]) AND provider_batch_id IS NOT NULL""",
        (job_ids,),
    ).fetchone()
    assert in_batches == (8,)

    made = fake_openai.batches.created["openai"]
    again = wait_ended(client, start(client, body)["id"])
    assert again["status"] == "completed"
    assert again["cost_usd"] == "0"
    for before, after in zip(done["candidates"], again["candidates"], strict=True):
        assert after["cost_usd"] == "0" and after["cache_hits"] == after["jobs"] == 4
        assert after["pass_rate"] == before["pass_rate"]
    assert again["regressions"] == done["regressions"]
    assert fake_openai.batches.created["openai"] == made  # no provider batch made


def test_an_eval_cancelled_mid_way(client: Client, db: psycopg.Connection[Any]) -> None:
    prompt_name = name("c")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}"}])
    qs = [unique(f"[sleep:1.5] slow {i}") for i in range(24)]
    dataset_name, _ = dataset(
        client, [{"variables": {"q": q}, "expected": f"echo: {q}"} for q in qs]
    )
    started = start(
        client,
        {
            "dataset": dataset_name,
            "candidates": [{"prompt": {"name": prompt_name, "version": 1}}],
            "scorers": [{"type": "equals_expected"}],
        },
    )
    wait_until(
        lambda: get(client, started["id"])["progress"]["done"] >= 1,
        60,
        "the first result to be scored",
    )
    response = client.http.post(f"/v1/evals/{started['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    done = cancelled["progress"]["done"]
    assert 1 <= done < 24

    batch = client.http.get(f"/v1/batches/{cancelled['batch_id']}").json()
    assert batch["counts"]["cancelled"] >= 1
    # Jobs running at the cancel finish; the eval stays as it was, and keeps what
    # finished before it.
    wait_until(
        lambda: (
            client.http.get(f"/v1/batches/{cancelled['batch_id']}").json()["status"] == "cancelled"
        ),
        60,
        "the batch's running jobs to finish",
    )
    later = get(client, started["id"], items_limit=24)
    assert later["status"] == "cancelled" and later["progress"]["done"] == done
    scored = [r for item in results(later) for r in item if r["passed"] is not None]
    assert len(scored) == done and all(r["passed"] and r["status"] == "succeeded" for r in scored)
    statuses = {r["status"] for item in results(later) for r in item}
    assert "cancelled" in statuses
    [candidate] = later["candidates"]
    assert candidate["pass_rate"] == 1.0  # of the results scored; cancelled ones have none

    again = client.http.post(f"/v1/evals/{started['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    state = db.execute("SELECT status, scored FROM evals WHERE id = %s", (started["id"],))
    assert state.fetchone() == ("cancelled", done)


def test_a_completed_eval_cannot_be_cancelled(client: Client) -> None:
    prompt_name = name("d")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}"}])
    dataset_name, _ = dataset(client, [{"variables": {"q": unique("quick")}}])
    started = start(
        client,
        {"dataset": dataset_name, "candidates": [{"prompt": {"name": prompt_name, "version": 1}}]},
    )
    done = wait_ended(client, started["id"])
    assert done["status"] == "completed" and done["candidates"][0]["pass_rate"] == 1.0
    refused = client.http.post(f"/v1/evals/{started['id']}/cancel")
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_request"


def test_the_workers_complete_an_eval_nobody_reads(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    """Only the maintenance pass moves it on (no GET of the eval): results scored, judge
    jobs submitted and read back, the eval completed."""
    prompt_name = name("m")
    prompt(client, prompt_name, [{"role": "user", "content": "{{q}}"}])
    qs = [unique(f"[score:0.8] unread {i}") for i in range(3)]
    dataset_name, _ = dataset(
        client, [{"variables": {"q": q}, "expected": f"echo: {q}"} for q in qs]
    )
    started = start(
        client,
        {
            "dataset": dataset_name,
            "candidates": [{"prompt": {"name": prompt_name, "version": 1}}],
            "scorers": [
                {"type": "equals_expected"},
                {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "Fine?"},
            ],
        },
    )

    def state() -> tuple[Any, ...] | None:
        row = db.execute(
            "SELECT status, scored FROM evals WHERE id = %s", (started["id"],)
        ).fetchone()
        return row if row is not None and row[0] == "completed" else None

    assert wait_until(state, 60, "the workers to complete the eval") == ("completed", 3)
    judged = db.execute(
        """SELECT count(*) FILTER (WHERE j.status = 'succeeded'), bool_and(r.passed)
           FROM eval_results r CROSS JOIN LATERAL unnest(r.judge_job_ids) AS k(id)
           JOIN jobs j ON j.id = k.id WHERE r.eval_id = %s""",
        (started["id"],),
    ).fetchone()
    assert judged == (3, True)
    done = get(client, started["id"])
    assert done["candidates"][0]["scores"] == {"equals_expected": 1.0, "judge#1": 0.8}
