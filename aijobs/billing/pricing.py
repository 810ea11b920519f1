"""Model prices (USD per 1M tokens): the shipped table plus AIJOBS_PRICING_FILE overrides.

A call is priced as the provider bills it: of its input tokens, those read from the
provider's prompt cache at `cached_input` and those written to it (Anthropic) at
`cache_write`, the rest at `input`; output (reasoning tokens included) at `output`. The
batch tier (OpenAI Batch, Anthropic Message Batches) prices input and output at
`batch_input` and `batch_output`, and its cached and cache-write input at their prices
scaled by batch_input / input (the providers' batch discount stacks with caching).

An entry (an override's above all) that omits the newer fields gets defaults:
cached_input = cache_write = input (no cache discount; an Anthropic model's cache writes,
1.25x input in truth, are then charged at input: give cache_write for them),
batch_input / batch_output = half of input / output (both providers' batch APIs charge
half), checked = null."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from aijobs.errors import UnknownModel
from aijobs.settings import get_settings

PROVIDERS = ("openai", "anthropic", "sim")
MILLION = Decimal(1_000_000)
TIERS = ("standard", "batch")
_HALF = Decimal("0.5")
# OpenAI's reasoning models (o1, o3, o4-mini, ...) and the gpt-5 family refuse
# `max_tokens`: their output cap is `max_completion_tokens`.
_COMPLETION_TOKENS_MODELS = re.compile(r"openai/(o\d|gpt-5)")


def default_cap_param(model: str) -> str:
    """The request field that carries a model's output cap, unless its price entry says."""
    return "max_completion_tokens" if _COMPLETION_TOKENS_MODELS.match(model) else "max_tokens"


@dataclass(frozen=True)
class ModelPrice:
    model: str
    mode: str  # "chat" | "embedding"
    input_per_m: Decimal
    output_per_m: Decimal
    max_output_tokens: int
    cached_input_per_m: Decimal  # input read from the provider's prompt cache
    cache_write_per_m: Decimal  # input written to it (Anthropic; OpenAI: the input price)
    batch_input_per_m: Decimal  # the provider's batch API
    batch_output_per_m: Decimal
    checked: str | None = None  # the date these prices were checked, "YYYY-MM-DD"
    cap_param: str = "max_tokens"  # the request field that carries the output cap

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        *,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        tier: str = "standard",
    ) -> Decimal:
        """What a call costs. `input_tokens` counts ALL the call's input tokens, the
        cached and cache-write ones among them (OpenAI's prompt_tokens); `output_tokens`
        all its output, reasoning tokens included (OpenAI's completion_tokens). The batch
        tier prices every part at the batch rate: input and output at their batch
        prices, cached and cache-write input at theirs times batch_input / input."""
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
        cached = max(cached_input_tokens, 0)
        written = max(cache_write_tokens, 0)
        plain = max(input_tokens - cached - written, 0)
        input_price, output_price = self.input_per_m, self.output_per_m
        cache_cost = cached * self.cached_input_per_m + written * self.cache_write_per_m
        if tier == "batch":
            input_price, output_price = self.batch_input_per_m, self.batch_output_per_m
            if self.input_per_m:
                cache_cost = cache_cost * input_price / self.input_per_m
        return (plain * input_price + cache_cost + output_tokens * output_price) / MILLION


def _price(entry: dict[str, Any], key: str, default: Decimal) -> Decimal:
    value = entry.get(key)
    return default if value is None else Decimal(str(value))


def _parse(models: dict[str, Any]) -> dict[str, ModelPrice]:
    """Entries from the shipped table or an override; an entry that omits a newer price
    gets its default (see the module's docstring)."""
    table: dict[str, ModelPrice] = {}
    for name, entry in models.items():
        input_per_m = Decimal(str(entry["input"]))
        output_per_m = Decimal(str(entry.get("output", "0")))
        checked = entry.get("checked")
        table[name] = ModelPrice(
            model=name,
            mode=str(entry.get("mode", "chat")),
            input_per_m=input_per_m,
            output_per_m=output_per_m,
            max_output_tokens=int(entry.get("max_output_tokens", 4096)),
            cached_input_per_m=_price(entry, "cached_input", input_per_m),
            cache_write_per_m=_price(entry, "cache_write", input_per_m),
            batch_input_per_m=_price(entry, "batch_input", input_per_m * _HALF),
            batch_output_per_m=_price(entry, "batch_output", output_per_m * _HALF),
            checked=None if checked is None else str(checked),
            cap_param=str(entry.get("cap_param") or default_cap_param(name)),
        )
    return table


def _load_override(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml  # type: ignore[import-untyped]  # optional: only for YAML price files

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    models = data.get("models", data) if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ValueError(f"{path}: expected a mapping of model -> prices")
    return models


@lru_cache
def pricing_table() -> dict[str, ModelPrice]:
    shipped = json.loads(resources.files("aijobs").joinpath("billing/prices.json").read_text())
    table = _parse(shipped["models"])
    override = get_settings().pricing_file
    if override is not None:
        table.update(_parse(_load_override(override)))
    return table


def price_for(model: str) -> ModelPrice:
    """The price of a `<provider>/<name>` model, or UnknownModel."""
    provider, _, name = model.partition("/")
    if provider not in PROVIDERS or not name:
        raise UnknownModel(
            f"unknown provider in model {model!r}; use one of {', '.join(PROVIDERS)}"
        )
    price = pricing_table().get(model)
    if price is None:
        raise UnknownModel(
            f"model {model!r} has no price; add it with AIJOBS_PRICING_FILE to use it"
        )
    return price
