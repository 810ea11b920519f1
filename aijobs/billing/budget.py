"""Budgets: what a call may cost at most, the UTC periods, and the check at submit.

The reservation itself is part of the worker's claim (aijobs/execution.py): one
statement that checks the tenant's counters and adds the reservation together, so
concurrent calls on any number of workers cannot overshoot a limit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from aijobs.billing.pricing import price_for
from aijobs.errors import AppError
from aijobs.jobs.schemas import JobRequest
from aijobs.metrics import BUDGET_REJECTIONS
from aijobs.money import usd

# Chat templates add a few tokens per message and per reply.
TOKENS_PER_MESSAGE = 8
TOKENS_PER_REQUEST = 16


class BudgetExceeded(AppError):
    status = 402
    code = "budget_exceeded"
    title = "Budget exceeded"


def input_token_bound(request: JobRequest) -> int:
    """A conservative bound on input tokens: a token covers at least one UTF-8 byte."""
    if request.messages is not None:
        texts = [message.content for message in request.messages]
    elif isinstance(request.input, list):
        texts = request.input
    else:
        texts = [request.input or ""]
    size = sum(len(item.encode()) for item in texts)
    return size + TOKENS_PER_MESSAGE * len(texts) + TOKENS_PER_REQUEST


def max_call_cost(request: JobRequest, model: str) -> Decimal:
    """Input bound plus max_tokens (or the model's output cap) at list price."""
    price = price_for(model)
    output = price.max_output_tokens
    if request.params.max_tokens is not None and price.max_output_tokens:
        output = min(request.params.max_tokens, price.max_output_tokens)
    if request.task == "embed":
        output = 0
    return price.cost(input_token_bound(request), output)


def reservations(request: JobRequest) -> dict[str, str]:
    """{model: max cost of one call}, for the job and each fallback."""
    return {model: str(max_call_cost(request, model)) for model in request.models()}


def periods(now: datetime | None = None) -> tuple[date, date]:
    """The current UTC day and month (its first day)."""
    current = (now or datetime.now(UTC)).astimezone(UTC)
    return current.date(), current.date().replace(day=1)


@dataclass(frozen=True)
class PeriodState:
    limit: Decimal | None
    spent: Decimal
    reserved: Decimal

    @property
    def remaining(self) -> Decimal | None:
        if self.limit is None:
            return None
        return max(self.limit - self.spent - self.reserved, Decimal(0))

    def as_json(self) -> dict[str, Any]:
        def money(value: Decimal | None) -> str | None:
            return None if value is None else usd(value)

        return {
            "limit": money(self.limit),
            "spent": money(self.spent),
            "reserved": money(self.reserved),
            "remaining": money(self.remaining),
        }


_STATE = text(
    """
    SELECT t.daily_budget_usd, t.monthly_budget_usd,
           CASE WHEN c.day = :today THEN c.day_spent ELSE 0 END,
           coalesce(c.day_reserved, 0),
           CASE WHEN c.month = :month THEN c.month_spent ELSE 0 END,
           coalesce(c.month_reserved, 0)
    FROM tenants t LEFT JOIN budget_counters c ON c.tenant_id = t.id
    WHERE t.id = :tenant_id
    """
)


def state(
    conn: Connection, tenant_id: uuid.UUID, now: datetime | None = None
) -> tuple[PeriodState, PeriodState]:
    """(daily, monthly) as the counters the reservations use see them."""
    today, month = periods(now)
    row = conn.execute(_STATE, {"tenant_id": tenant_id, "today": today, "month": month}).one()
    daily_limit, monthly_limit, day_spent, day_reserved, month_spent, month_reserved = row
    return (
        PeriodState(daily_limit, Decimal(day_spent or 0), Decimal(day_reserved)),
        PeriodState(monthly_limit, Decimal(month_spent or 0), Decimal(month_reserved)),
    )


def refuse_if_over(conn: Connection, tenant_id: uuid.UUID) -> None:
    """402 at submit for a tenant whose spend has already reached a limit."""
    for name, period in zip(("daily", "monthly"), state(conn, tenant_id), strict=True):
        if period.limit is not None and period.spent >= period.limit:
            BUDGET_REJECTIONS.labels("submit").inc()
            raise BudgetExceeded(
                f"the {name} budget of {usd(period.limit)} USD is spent",
                extra={"budget": period.as_json()},
            )
