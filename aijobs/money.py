"""Money as clients read it: a Decimal as a plain decimal string, no exponent, no
trailing zeros ("0.0123", "12", "0"), the one formatter every view and message uses."""

from __future__ import annotations

from decimal import Decimal


def usd(value: Decimal | int) -> str:
    """`Decimal("0E-10")` -> "0", `Decimal("1.2300000000")` -> "1.23"."""
    value = Decimal(value)
    return format(value.normalize(), "f") if value else "0"
