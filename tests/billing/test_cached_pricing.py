"""Calls priced as the providers bill them: cached and cache-write input at their own
prices, reasoning tokens as output (once), the batch tier at batch prices, and override
files that predate these prices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from anthropic.types import Usage as AnthropicUsage
from openai.types import CompletionUsage
from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails

from aijobs.billing.budget import max_call_cost
from aijobs.billing.call_bounds import input_token_bound, output_cap
from aijobs.billing.pricing import price_for, pricing_table
from aijobs.jobs.schemas import JobRequest
from aijobs.settings import get_settings
from worker.providers.usage import from_anthropic, from_openai


def test_every_shipped_entry_has_cache_batch_prices_and_a_date() -> None:
    for name, price in pricing_table().items():
        assert price.checked is not None and len(price.checked) == 10, name
        assert price.cached_input_per_m <= price.input_per_m, name
        assert price.batch_input_per_m == price.input_per_m / 2, name
        assert price.batch_output_per_m == price.output_per_m / 2, name
    sonnet = price_for("anthropic/claude-sonnet-4-5")
    assert sonnet.cached_input_per_m == Decimal("0.30")
    assert sonnet.cache_write_per_m == Decimal("3.75")
    mini = price_for("openai/gpt-4o-mini")
    assert (mini.cached_input_per_m, mini.cache_write_per_m) == (Decimal("0.075"), Decimal("0.15"))


def test_openai_cached_tokens_at_the_cached_price() -> None:
    # gpt-4o: 2.50 in, 1.25 cached, 10.00 out. 1M prompt tokens, half of them cached.
    usage = from_openai(
        CompletionUsage(
            prompt_tokens=1_000_000,
            completion_tokens=100_000,
            total_tokens=1_100_000,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=500_000),
        )
    )
    assert (usage.input_tokens, usage.cached_input_tokens) == (1_000_000, 500_000)
    cost = price_for("openai/gpt-4o").cost(
        usage.input_tokens, usage.output_tokens, cached_input_tokens=usage.cached_input_tokens
    )
    assert cost == Decimal("2.875")  # 1.25 + 0.625 + 1.00
    # Before: the same call at the full input price.
    assert price_for("openai/gpt-4o").cost(1_000_000, 100_000) == Decimal("3.50")


def test_openai_usage_without_cache_details() -> None:
    for details in (None, PromptTokensDetails(cached_tokens=None)):
        usage = from_openai(
            CompletionUsage(
                prompt_tokens=10,
                completion_tokens=3,
                total_tokens=13,
                prompt_tokens_details=details,
            )
        )
        assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (10, 3, 0)


def test_anthropic_cache_read_and_write_are_added_to_its_input_and_priced_apart() -> None:
    # Anthropic's input_tokens leaves out the cache's reads and writes.
    usage = from_anthropic(
        AnthropicUsage(
            input_tokens=1_000_000,
            output_tokens=100_000,
            cache_read_input_tokens=2_000_000,
            cache_creation_input_tokens=400_000,
        )
    )
    assert usage.input_tokens == 3_400_000
    assert (usage.cached_input_tokens, usage.cache_write_tokens) == (2_000_000, 400_000)
    cost = price_for("anthropic/claude-sonnet-4-5").cost(
        usage.input_tokens,
        usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    # 1M at 3.00 + 2M read at 0.30 + 0.4M written at 3.75 + 0.1M out at 15.00
    assert cost == Decimal("6.60")


def test_anthropic_usage_with_null_cache_fields() -> None:
    usage = from_anthropic(
        AnthropicUsage(
            input_tokens=12,
            output_tokens=4,
            cache_read_input_tokens=None,
            cache_creation_input_tokens=None,
        )
    )
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (12, 0, 0)


def test_batch_tier_prices_every_part_at_the_batch_rate() -> None:
    gpt4o = price_for("openai/gpt-4o")
    # 0.5M plain at 1.25 + 0.5M cached at 1.25 x 1.25/2.50 + 0.1M out at 5.00
    assert gpt4o.cost(1_000_000, 100_000, cached_input_tokens=500_000, tier="batch") == Decimal(
        "1.4375"
    )
    sonnet = price_for("anthropic/claude-sonnet-4-5")
    # 1M plain at 1.50 + (0.60 read + 1.50 written) x 0.5 + 0.1M out at 7.50
    assert sonnet.cost(
        3_400_000,
        100_000,
        cached_input_tokens=2_000_000,
        cache_write_tokens=400_000,
        tier="batch",
    ) == Decimal("3.30")
    assert gpt4o.cost(1_000_000, 1_000_000, tier="batch") == Decimal("6.25")
    with pytest.raises(ValueError):
        gpt4o.cost(1, 1, tier="flex")


def test_reasoning_tokens_count_once_as_output() -> None:
    # completion_tokens already holds the reasoning tokens.
    usage = from_openai(
        CompletionUsage(
            prompt_tokens=1_000,
            completion_tokens=5_000,
            total_tokens=6_000,
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=4_000),
        )
    )
    assert usage.output_tokens == 5_000
    # o3: 2.00 in, 8.00 out
    assert price_for("openai/o3").cost(usage.input_tokens, usage.output_tokens) == Decimal("0.042")


def test_reservation_at_a_tier_assumes_no_cache_discount() -> None:
    request = JobRequest.model_validate(
        {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
    )
    standard = max_call_cost(request, "openai/gpt-4o")
    batch = max_call_cost(request, "openai/gpt-4o", tier="batch")
    bound = input_token_bound(request, "openai/gpt-4o")
    cap = output_cap(request, "openai/gpt-4o")
    assert standard == (bound * Decimal("2.50") + cap * Decimal("10.00")) / 1_000_000
    assert batch == standard / 2


@pytest.fixture
def override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "prices.json"
    monkeypatch.setenv("AIJOBS_PRICING_FILE", str(path))
    yield path
    get_settings.cache_clear()
    pricing_table.cache_clear()
    monkeypatch.delenv("AIJOBS_PRICING_FILE")
    get_settings.cache_clear()
    pricing_table.cache_clear()


def test_an_override_without_the_new_prices_gets_their_defaults(
    override: Path,
) -> None:
    override.write_text(
        json.dumps(
            {
                "models": {
                    "openai/my-model": {"mode": "chat", "input": "0.5", "output": "1.5"},
                    "anthropic/my-claude": {
                        "input": "2",
                        "output": "10",
                        "cached_input": "0.2",
                        "checked": "2026-12-01",
                    },
                }
            }
        )
    )
    get_settings.cache_clear()
    pricing_table.cache_clear()
    mine = price_for("openai/my-model")
    assert mine.cached_input_per_m == mine.cache_write_per_m == Decimal("0.5")
    assert (mine.batch_input_per_m, mine.batch_output_per_m) == (Decimal("0.25"), Decimal("0.75"))
    assert mine.checked is None
    # A cached token costs what any input token does: the override knows no discount.
    assert mine.cost(1_000_000, 0, cached_input_tokens=600_000) == Decimal("0.5")
    assert mine.cost(1_000_000, 1_000_000, tier="batch") == Decimal("1")
    claude = price_for("anthropic/my-claude")
    assert claude.cached_input_per_m == Decimal("0.2") and claude.checked == "2026-12-01"
    assert claude.cache_write_per_m == Decimal("2")
    # The shipped entries are still there.
    assert price_for("openai/gpt-4o").cached_input_per_m == Decimal("1.25")
