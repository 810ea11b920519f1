"""The batch tier through real API and worker processes and the fake provider's batch
APIs: OpenAI Batch and Anthropic Message Batches end to end (results in shuffled
order), an expired line retried on the standard tier, an errored line, a worker
SIGKILLed while the provider batch runs, costs and reservations at the batch price,
cancel mid-way."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, publish_again, unique, wait_until
from tests.stack import Stack

ENDED = ("completed", "cancelled")
MINI = "openai/gpt-4o-mini"
HAIKU = "anthropic/claude-haiku-4-5"
MILLION = Decimal(1_000_000)
# Prices (USD per 1M tokens, input / output): list, and the batch tier's (half).
LIST = {MINI: (Decimal("0.15"), Decimal("0.60")), HAIKU: (Decimal("1.00"), Decimal("5.00"))}
BATCH = {MINI: (Decimal("0.075"), Decimal("0.30")), HAIKU: (Decimal("0.50"), Decimal("2.50"))}


def batch_cost(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price_in, price_out = BATCH[model]
    return (input_tokens * price_in + output_tokens * price_out) / MILLION


def list_cost(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price_in, price_out = LIST[model]
    return (input_tokens * price_in + output_tokens * price_out) / MILLION


@pytest.fixture
def slow_batches(fake_openai: FakeOpenAI) -> Iterator[Callable[[float], None]]:
    """Set how long the fake's provider batches take; back to 1 s after the test."""

    def set_duration(seconds: float) -> None:
        fake_openai.batches.duration_s = seconds

    yield set_duration
    fake_openai.batches.duration_s = 1.0


def _line(custom_id: str, content: str, model: str = MINI, **extra: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, **chat(content, model=model, **extra)}


def _submit(client: Client, lines: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.http.post("/v1/batches", json={"jobs": lines, "tier": "batch"})
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    assert batch["tier"] == "batch"
    return batch


def _batch(client: Client, batch_id: str) -> dict[str, Any]:
    response = client.http.get(f"/v1/batches/{batch_id}")
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def _wait_ended(client: Client, batch_id: str, timeout_s: float = 90) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def ended() -> dict[str, Any] | None:
        seen.update(_batch(client, batch_id))
        return dict(seen) if seen["status"] in ENDED else None

    return wait_until(ended, timeout_s, lambda: f"the batch to end: {seen}")


def _results(client: Client, batch_id: str) -> list[dict[str, Any]]:
    import json

    response = client.http.get(f"/v1/batches/{batch_id}/results")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _attempts(db: psycopg.Connection[Any], job_id: str) -> list[tuple[Any, ...]]:
    return db.execute(
        """SELECT attempt_no, outcome, error_code, provider_batch_id IS NOT NULL, cost_usd,
                  input_tokens, output_tokens
           FROM attempts WHERE job_id = %s ORDER BY attempt_no""",
        (job_id,),
    ).fetchall()


def _provider_batches(db: psycopg.Connection[Any], job_ids: list[str]) -> list[tuple[Any, ...]]:
    return db.execute(
        """SELECT DISTINCT p.id, p.state, p.provider_batch_id FROM provider_batches p
           JOIN attempts a ON a.provider_batch_id = p.id WHERE a.job_id = ANY(%s::uuid[])""",
        (job_ids,),
    ).fetchall()


def _end_to_end(
    client: Client, fake: FakeOpenAI, db: psycopg.Connection[Any], provider: str, model: str
) -> None:
    created = fake.batches.created[provider]
    same = unique("same")
    messages = [unique("one"), same, unique("three"), same, unique("five"), unique("six")]
    lines = [_line(f"c{i}", message, model=model) for i, message in enumerate(messages)]
    batch = _submit(client, lines)
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed", done
    assert done["counts"]["succeeded"] == 6, done

    results = _results(client, batch["id"])
    assert [r["custom_id"] for r in results] == [f"c{i}" for i in range(6)]
    for result, message in zip(results, messages, strict=True):
        # Each answer reached its own job, whatever order the provider wrote them in.
        assert result["result"]["content"] == f"echo: {message}", result
        assert result["status"] == "succeeded"
    # One provider batch, one line per distinct request, no single call.
    assert fake.batches.created[provider] == created + 1
    for message in set(messages):
        assert fake.batches.answered(message) == 1
        assert fake.count(message) == 0
    job_ids = [r["job_id"] for r in results]
    [(_, state, provider_id)] = _provider_batches(db, job_ids)
    assert state == "ended" and provider_id is not None

    total = Decimal(0)
    for result in results:
        attempts = _attempts(db, result["job_id"])
        if result["custom_id"] == "c3":  # identical to c1: it followed it, no call
            assert attempts == []
            assert Decimal(result["cost_usd"]) == 0
            continue
        [(number, outcome, code, in_batch, cost, tokens_in, tokens_out)] = attempts
        assert (number, outcome, code, in_batch) == (1, "succeeded", None, True)
        assert cost == batch_cost(model, tokens_in, tokens_out) > 0
        assert Decimal(result["cost_usd"]) == cost
        total += cost
    assert Decimal(done["cost_usd"]) == total


def test_openai_batch_tier_end_to_end(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    _end_to_end(client, fake_openai, db, "openai", MINI)


def test_anthropic_batch_tier_end_to_end(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    _end_to_end(client, fake_openai, db, "anthropic", HAIKU)


@pytest.mark.parametrize("model", [MINI, HAIKU])
def test_an_expired_line_is_retried_on_the_standard_tier(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any], model: str
) -> None:
    expired = unique("[batch:expire] late")
    fine = unique("fine")
    batch = _submit(client, [_line("late", expired, model=model), _line("ok", fine, model=model)])
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 2, done
    late = next(r for r in _results(client, batch["id"]) if r["custom_id"] == "late")
    attempts = _attempts(db, late["job_id"])
    assert [a[:4] for a in attempts] == [
        (1, "failed", "provider_timeout", True),
        (2, "succeeded", None, False),
    ]
    assert attempts[0][4] == 0  # an expired line is not billed
    # The retry was one single call, at the list price.
    assert fake_openai.count(expired) == 1
    assert attempts[1][4] == list_cost(model, attempts[1][5], attempts[1][6])
    assert Decimal(late["cost_usd"]) == attempts[1][4]


@pytest.mark.parametrize("model", [MINI, HAIKU])
def test_an_errored_line_fails_the_job_without_attempts_left(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any], model: str
) -> None:
    broken = unique("[batch:error] broken")
    batch = _submit(client, [_line("bad", broken, model=model, max_attempts=1)])
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["failed"] == 1, done
    [result] = _results(client, batch["id"])
    assert result["status"] == "failed"
    assert result["error"]["code"] == "provider_error"
    assert result["error"]["retryable"] is True
    assert [a[:4] for a in _attempts(db, result["job_id"])] == [
        (1, "failed", "provider_error", True)
    ]
    assert fake_openai.count(broken) == 0


def _wait_submitted(db: psycopg.Connection[Any], job_ids: list[str]) -> tuple[Any, ...]:
    def submitted() -> tuple[Any, ...] | None:
        rows = _provider_batches(db, job_ids)
        return rows[0] if rows and rows[0][1] == "submitted" else None

    return wait_until(submitted, 60, "the provider batch to be submitted")


def _job_ids(client: Client, batch_id: str) -> list[str]:
    return [r["job_id"] for r in _results(client, batch_id)]


@pytest.mark.parametrize(("provider", "model"), [("openai", MINI), ("anthropic", HAIKU)])
def test_a_worker_sigkilled_while_the_provider_batch_runs(
    live: Stack,
    client: Client,
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
    slow_batches: Callable[[float], None],
    provider: str,
    model: str,
) -> None:
    slow_batches(4)
    created = fake_openai.batches.created[provider]
    messages = [unique(f"killed {i}") for i in range(4)]
    batch = _submit(client, [_line(f"k{i}", m, model=model) for i, m in enumerate(messages)])
    job_ids = _job_ids(client, batch["id"])
    _wait_submitted(db, job_ids)
    live.kill_workers(signal.SIGKILL)
    live.start_worker()
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 4, done
    assert fake_openai.batches.created[provider] == created + 1
    for message in messages:
        assert fake_openai.batches.answered(message) == 1
        assert fake_openai.count(message) == 0
    for job_id in job_ids:
        assert [a[:4] for a in _attempts(db, job_id)] == [(1, "succeeded", None, True)]


@pytest.mark.parametrize(("provider", "model"), [("openai", MINI), ("anthropic", HAIKU)])
def test_a_provider_batch_created_before_a_crash_is_found_not_made_again(
    live: Stack,
    client: Client,
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
    slow_batches: Callable[[float], None],
    provider: str,
    model: str,
) -> None:
    """The worker died after the provider created the batch and before the row said so:
    the row is back to `submitting`, as such a crash leaves it."""
    slow_batches(4)
    created = fake_openai.batches.created[provider]
    messages = [unique(f"found {i}") for i in range(3)]
    batch = _submit(client, [_line(f"f{i}", m, model=model) for i, m in enumerate(messages)])
    job_ids = _job_ids(client, batch["id"])
    row_id, _, provider_id = _wait_submitted(db, job_ids)
    live.kill_workers(signal.SIGKILL)
    db.execute(
        """UPDATE provider_batches SET state = 'submitting', provider_batch_id = NULL,
                  submitted_at = NULL WHERE id = %s""",
        (row_id,),
    )
    live.start_worker()
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 3, done
    assert fake_openai.batches.created[provider] == created + 1
    # Its jobs have ended; the row ends right after its last line is settled.
    wait_until(lambda: _provider_batches(db, job_ids)[0][1] == "ended", 30, "the row to end")
    [(_, _, found)] = _provider_batches(db, job_ids)
    assert found == provider_id


def test_costs_and_the_reservation_are_at_the_batch_price(
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
    slow_batches: Callable[[float], None],
) -> None:
    slow_batches(3)
    message = unique("budgeted")
    body = _line("b", message, params={"max_tokens": 1000})
    # 1000 output tokens at 0.60 per 1M: the list price reservation is over 0.0006 with
    # the input bound; a budget of 0.0004 holds the call at the batch price only.
    list_reserve = Decimal("0.0006")
    client = make_client(daily_budget=Decimal("0.0004"))
    batch = _submit(client, [body])
    [job_id] = _job_ids(client, batch["id"])
    reserve = db.execute("SELECT reserve_usd FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert reserve is not None
    at_list = Decimal(reserve[0][MINI])
    at_batch = Decimal(reserve[0][f"batch:{MINI}"])
    assert at_list > list_reserve > Decimal("0.0004") > at_batch
    assert at_batch == at_list / 2

    def held() -> Decimal | None:
        row = db.execute(
            """SELECT c.day_reserved, a.reserved_usd FROM budget_counters c
               JOIN tenants t ON t.id = c.tenant_id
               JOIN attempts a ON a.tenant_id = t.id
               WHERE t.name = %s AND a.outcome = 'started'""",
            (client.tenant,),
        ).fetchone()
        return row[0] if row is not None and row[0] == row[1] else None

    assert wait_until(held, 60, "the call's reservation") == at_batch
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 1, done
    [(_, outcome, _, in_batch, cost, tokens_in, tokens_out)] = _attempts(db, job_id)
    assert (outcome, in_batch) == ("succeeded", True)
    assert cost == batch_cost(MINI, tokens_in, tokens_out)
    usage = client.http.get("/v1/usage").json()
    assert Decimal(usage["budget"]["daily"]["spent"]) == cost
    assert Decimal(usage["budget"]["daily"]["reserved"]) == 0


def test_cancel_mid_way(
    make_client: Callable[..., Client],
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
    slow_batches: Callable[[float], None],
) -> None:
    """One call in a provider batch, one job waiting for budget: the cancel cancels the
    waiting job; the provider batch is left to finish and its answer still settles."""
    slow_batches(4)
    # Room for one call's batch reservation, not two.
    client = make_client(daily_budget=Decimal("0.0004"))
    first, second = unique("in the batch"), unique("waiting")
    batch = _submit(
        client,
        [
            _line("a", first, params={"max_tokens": 1000}),
            _line("b", second, params={"max_tokens": 1000}),
        ],
    )
    job_ids = _job_ids(client, batch["id"])
    _wait_submitted(db, job_ids)
    seen = _batch(client, batch["id"])
    assert (seen["counts"]["running"], seen["counts"]["queued"]) == (1, 1), seen
    cancelled = client.http.post(f"/v1/batches/{batch['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelling"
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "cancelled", done
    assert (done["counts"]["succeeded"], done["counts"]["cancelled"]) == (1, 1), done
    # The two jobs were claimed in no set order (one submit: one created_at).
    results = {r["custom_id"]: r for r in _results(client, batch["id"])}
    ran = "a" if results["a"]["status"] == "succeeded" else "b"
    waited = "b" if ran == "a" else "a"
    content = {"a": first, "b": second}
    assert results[ran]["result"]["content"] == f"echo: {content[ran]}"
    assert results[waited]["status"] == "cancelled"
    assert _attempts(db, results[waited]["job_id"]) == []
    assert fake_openai.batches.answered(content[waited]) == 0


def test_checks_and_response_schema_apply_and_retry_on_the_standard_tier(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    checked = unique("checked")
    shaped = unique("[reply:not json] shaped")
    parsed = unique('[reply:{"n": 1}] parsed')
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    lines = [
        _line("check", checked, max_attempts=2, checks=[{"type": "regex", "pattern": "^OK$"}]),
        _line("schema", shaped, max_attempts=2, response_schema=schema),
        _line("good", parsed, response_schema=schema),
    ]
    batch = _submit(client, lines)
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed", done
    results = {r["custom_id"]: r for r in _results(client, batch["id"])}
    assert results["good"]["status"] == "succeeded"
    assert results["good"]["result"]["parsed"] == {"n": 1}
    for custom_id, code in (("check", "check_failed"), ("schema", "invalid_output")):
        result = results[custom_id]
        assert result["status"] == "failed" and result["error"]["code"] == code, result
        # The provider batch's answer failed; the retry was one single call.
        assert [a[:4] for a in _attempts(db, result["job_id"])] == [
            (1, "failed", code, True),
            (2, "failed", code, False),
        ]
    assert len(fake_openai.received_with(checked)) == 1
    assert len(fake_openai.received_with(shaped)) == 1
    assert fake_openai.count(parsed) == 0


def test_a_former_that_died_while_claiming_leaves_a_row_the_next_worker_submits(
    live: Stack,
    client: Client,
    fake_openai: FakeOpenAI,
    db: psycopg.Connection[Any],
) -> None:
    """The state a worker SIGKILLed in the middle of forming a provider batch leaves: a
    `building` row holding the calls claimed so far, the other jobs still queued."""
    import uuid

    from aijobs.batches import provider_batches
    from aijobs.db import autocommit
    from aijobs.jobs import transitions

    live.kill_workers(signal.SIGTERM)
    created = fake_openai.batches.created["openai"]
    messages = [unique("claimed"), unique("left queued")]
    batch = _submit(client, [_line(f"m{i}", m) for i, m in enumerate(messages)])
    claimed_id, queued_id = _job_ids(client, batch["id"])
    row_id = uuid.uuid4()
    with autocommit() as conn:
        provider_batches.create(conn, row_id, "openai", MINI, "chat")
        owner = provider_batches.owner_of(row_id)
        job = transitions.claim_for_provider_batch(conn, uuid.UUID(claimed_id), owner, row_id)
    assert isinstance(job, transitions.Claimed) and job.tier == "batch"

    live.start_worker()
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 2, done
    # The dead former's row went out with its one call; the queued job in another batch.
    assert fake_openai.batches.created["openai"] == created + 2
    [(_, _, found)] = _provider_batches(db, [claimed_id])
    assert found is not None
    wait_until(lambda: _provider_batches(db, [claimed_id])[0][1] == "ended", 30, "the row")
    requests = db.execute("SELECT requests FROM provider_batches WHERE id = %s", (row_id,))
    assert requests.fetchone() == (1,)
    assert _provider_batches(db, [queued_id])[0][0] != row_id
    for message in messages:
        assert fake_openai.batches.answered(message) == 1
        assert fake_openai.count(message) == 0


def test_two_workers_form_one_provider_batch(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    live.ensure_workers(2)
    created = fake_openai.batches.created["anthropic"]
    messages = [unique(f"shared {i}") for i in range(8)]
    batch = _submit(client, [_line(f"s{i}", m, model=HAIKU) for i, m in enumerate(messages)])
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 8, done
    assert fake_openai.batches.created["anthropic"] == created + 1
    assert len(_provider_batches(db, _job_ids(client, batch["id"]))) == 1
    for message in messages:
        assert fake_openai.batches.answered(message) == 1


def test_a_call_that_cannot_fit_the_budget_alone_fails_and_is_not_sent(
    make_client: Callable[..., Client], fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    # The model's whole output cap (16,384 tokens at 0.30 per 1M at the batch price) is
    # more than the budget: no room could ever be freed for it.
    client = make_client(daily_budget=Decimal("0.0004"))
    message = unique("too big")
    batch = _submit(client, [_line("big", message)])
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["failed"] == 1, done
    [result] = _results(client, batch["id"])
    assert result["error"]["code"] == "budget_exceeded"
    assert _attempts(db, result["job_id"]) == []
    assert fake_openai.batches.answered(message) == 0
    assert fake_openai.count(message) == 0


def test_embeddings_on_the_batch_tier(
    client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    texts = [unique("embed one"), unique("embed two")]
    lines = [
        {
            "custom_id": f"e{i}",
            "model": "openai/text-embedding-3-small",
            "task": "embed",
            "input": text,
        }
        for i, text in enumerate(texts)
    ]
    batch = _submit(client, lines)
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 2, done
    for result, text in zip(_results(client, batch["id"]), texts, strict=True):
        assert result["result"]["embeddings"] == [[float(len(text)), 0.5, 0.0]]
        [(_, outcome, _, in_batch, cost, tokens_in, _)] = _attempts(db, result["job_id"])
        assert (outcome, in_batch) == ("succeeded", True)
        assert cost == tokens_in * Decimal("0.01") / MILLION > 0  # the batch input price
        assert fake_openai.batches.answered(text) == 1
        assert fake_openai.count(text) == 0


def test_a_job_message_for_a_batch_tier_job_does_not_run_it_alone(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    """A batch-tier job pushed into the fair queue (by a sweeper, a redelivery) is left
    to the dispatcher: its call goes only in a provider batch."""
    live.kill_workers(signal.SIGTERM)
    messages = [unique(f"messaged {i}") for i in range(3)]
    batch = _submit(client, [_line(f"q{i}", m) for i, m in enumerate(messages)])
    publish_again(_job_ids(client, batch["id"]), times=2)
    live.start_worker()
    done = _wait_ended(client, batch["id"])
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 3, done
    for message in messages:
        assert fake_openai.count(message) == 0
        assert fake_openai.batches.answered(message) == 1
    for job_id in _job_ids(client, batch["id"]):
        assert [a[:4] for a in _attempts(db, job_id)] == [(1, "succeeded", None, True)]
