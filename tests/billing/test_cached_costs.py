"""A call whose prompt the provider partly read from its cache is recorded at the price
the provider bills, through real API and worker processes and the fake provider."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import Client
from tests.fake_openai import words
from tests.helpers import chat, unique

MILLION = Decimal(1_000_000)


def _attempt(db: psycopg.Connection[Any], job_id: str) -> tuple[Any, ...]:
    rows = db.execute(
        "SELECT input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost_usd"
        " FROM attempts WHERE job_id = %s",
        (job_id,),
    ).fetchall()
    assert len(rows) == 1, rows
    return tuple(rows[0])


def test_openai_cached_prompt_tokens_are_billed_at_the_cached_price(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    message = unique("[cached:4] the long and stable part of a prompt, then a question")
    done = client.wait(client.submit(chat(message)).json()["id"])
    assert done["status"] == "succeeded", done
    prompt, output = words(message), words(f"echo: {message}")
    # gpt-4o-mini: 0.15 per 1M input, 0.075 per 1M cached input, 0.60 per 1M output.
    expected = (prompt - 4) * Decimal("0.15") + 4 * Decimal("0.075") + output * Decimal("0.60")
    expected /= MILLION
    assert Decimal(done["cost_usd"]) == expected
    assert expected < (prompt * Decimal("0.15") + output * Decimal("0.60")) / MILLION
    assert done["usage"]["input_tokens"] == prompt  # all of them, the cached ones too
    assert _attempt(db, done["id"]) == (prompt, 4, 0, output, expected)

    usage = client.http.get("/v1/usage", params={"group_by": "model"}).json()
    [line] = usage["data"]
    assert line["model"] == "openai/gpt-4o-mini"
    assert (line["input_tokens"], line["cached_input_tokens"]) == (prompt, 4)
    assert Decimal(line["cost_usd"]) == expected
    assert usage["total"]["cached_input_tokens"] == 4


def test_anthropic_cache_read_and_write_are_billed_at_their_prices(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    # The directive's other spelling, [cached N], and a cache write beside it.
    message = unique("[cached 2] [cache_write:3] a document worth caching, and a question")
    body = {
        "model": "anthropic/claude-haiku-4-5",
        "messages": [
            {"role": "system", "content": "be kind"},
            {"role": "user", "content": message},
        ],
    }
    done = client.wait(client.submit(body).json()["id"])
    assert done["status"] == "succeeded", done
    prompt = words(message) + 2  # the system text's two words
    output = words(f"echo: {message}")
    # claude-haiku-4-5: 1.00 in, 0.10 cache read, 1.25 cache write, 5.00 out (per 1M).
    expected = (
        (prompt - 2 - 3) * Decimal("1.00")
        + 2 * Decimal("0.10")
        + 3 * Decimal("1.25")
        + output * Decimal("5.00")
    ) / MILLION
    assert Decimal(done["cost_usd"]) == expected
    # Anthropic's input_tokens leaves the cache's tokens out; ours counts them.
    assert done["usage"]["input_tokens"] == prompt
    assert _attempt(db, done["id"]) == (prompt, 2, 3, output, expected)


def test_a_call_without_cached_tokens_costs_as_before(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    message = unique("nothing cached here")
    done = client.wait(client.submit(chat(message)).json()["id"])
    prompt, output = words(message), words(f"echo: {message}")
    expected = (prompt * Decimal("0.15") + output * Decimal("0.60")) / MILLION
    assert Decimal(done["cost_usd"]) == expected
    assert _attempt(db, done["id"]) == (prompt, 0, 0, output, expected)


def _gpt4o_mini(input_tokens: int, cached: int, output_tokens: int) -> Decimal:
    return (
        (input_tokens - cached) * Decimal("0.15")
        + cached * Decimal("0.075")
        + output_tokens * Decimal("0.60")
    ) / MILLION


def test_a_judge_call_with_cached_tokens_is_priced_the_same_way(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    # The judge is sent the output (this message echoed), directive and all: the fake
    # reports 3 cached tokens on both calls.
    message = unique("[cached:3] [score:0.9] judged")
    judge = {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "Is it polite?"}
    done = client.wait(client.submit(chat(message, checks=[judge])).json()["id"])
    assert done["status"] == "succeeded", done
    rows = db.execute(
        "SELECT kind, input_tokens, cached_input_tokens, output_tokens, cost_usd FROM attempts"
        " WHERE job_id = %s ORDER BY attempt_no",
        (done["id"],),
    ).fetchall()
    assert [row[0] for row in rows] == ["call", "judge"]
    for _, input_tokens, cached, output_tokens, cost in rows:
        assert cached == 3
        assert cost == _gpt4o_mini(input_tokens, cached, output_tokens)
    call = _gpt4o_mini(words(message), 3, words(f"echo: {message}"))
    assert rows[0][4] == call
    assert Decimal(done["cost_usd"]) == rows[0][4] + rows[1][4]


def test_reasoning_tokens_are_output_counted_once(
    client: Client, db: psycopg.Connection[Any]
) -> None:
    # The fake reports 3 of the completion's tokens as reasoning tokens, within
    # completion_tokens as OpenAI does.
    message = unique("[reasoning:3] think first")
    done = client.wait(client.submit(chat(message, model="openai/o4-mini")).json()["id"])
    assert done["status"] == "succeeded", done
    prompt, output = words(message), words(f"echo: {message}")
    assert output > 3
    # o4-mini: 1.10 in, 4.40 out (per 1M).
    expected = (prompt * Decimal("1.10") + output * Decimal("4.40")) / MILLION
    assert done["usage"] == {"input_tokens": prompt, "output_tokens": output}
    assert Decimal(done["cost_usd"]) == expected
    assert _attempt(db, done["id"]) == (prompt, 0, 0, output, expected)
