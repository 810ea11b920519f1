"""Model prices (USD per 1M tokens): the shipped table plus AIJOBS_PRICING_FILE overrides."""

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
        # Interim (replaced by the costs branch): the batch tier at half the list price.
        full = (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / MILLION
        return full / 2 if tier == "batch" else full


def _parse(models: dict[str, Any]) -> dict[str, ModelPrice]:
    table: dict[str, ModelPrice] = {}
    for name, entry in models.items():
        table[name] = ModelPrice(
            model=name,
            mode=str(entry.get("mode", "chat")),
            input_per_m=Decimal(str(entry["input"])),
            output_per_m=Decimal(str(entry.get("output", "0"))),
            max_output_tokens=int(entry.get("max_output_tokens", 4096)),
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
