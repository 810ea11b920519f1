"""Prices: exact decimals, unknown models refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aijobs.billing.pricing import price_for
from aijobs.errors import UnknownModel


def test_prices_are_exact_decimals() -> None:
    price = price_for("openai/gpt-4o-mini")
    assert price.cost(1_000_000, 1_000_000) == Decimal("0.75")
    assert price.cost(7, 3) == Decimal("0.00000285")
    assert price_for("openai/text-embedding-3-small").cost(50, 0) == Decimal("0.000001")


@pytest.mark.parametrize("model", ["openai/nope", "foo/gpt-4o-mini", "gpt-4o-mini", "openai/"])
def test_unknown_models_are_refused(model: str) -> None:
    with pytest.raises(UnknownModel):
        price_for(model)
