"""Budgets: what a call may cost at most, the UTC periods (by the database's clock), the
check at submit, and the counters recounted from the ledger when a budget is set.

The reservation itself is part of the worker's claim (aijobs/jobs/transitions.py): one
statement that checks the tenant's counters and adds the reservation together, so
concurrent calls on any number of workers cannot overshoot a limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from aijobs.billing.call_bounds import input_token_bound, output_cap
from aijobs.billing.pricing import price_for
from aijobs.errors import AppError
from aijobs.jobs.schemas import JobRequest
from aijobs.metrics import BUDGET_REJECTIONS
from aijobs.money import usd

# The budget periods, from the database's clock: every worker and API process agrees on
# them whatever its own clock says. (A transaction's now() is its start time.)
TODAY = "(now() AT TIME ZONE 'utc')::date"
MONTH = "date_trunc('month', now() AT TIME ZONE 'utc')::date"
_DAY_START = "date_trunc('day', now() AT TIME ZONE 'utc') AT TIME ZONE 'utc'"
_MONTH_START = "date_trunc('month', now() AT TIME ZONE 'utc') AT TIME ZONE 'utc'"


class BudgetExceeded(AppError):
    status = 402
    code = "budget_exceeded"
    title = "Budget exceeded"


def max_call_cost(request: JobRequest, model: str, tier: str = "standard") -> Decimal:
    """The input bound plus the output cap the call is sent, at `tier`'s list price
    ("standard" | "batch"), with no cache discount: the most the call can cost."""
    return price_for(model).cost(
        input_token_bound(request, model), output_cap(request, model), tier=tier
    )


def reservations(request: JobRequest) -> dict[str, str]:
    """{model: max cost of one call}, for the job and each fallback."""
    return {model: str(max_call_cost(request, model)) for model in request.models()}


def periods(now: datetime | None = None) -> tuple[date, date]:
    """The current UTC day and month (its first day) by this process's clock: for
    reports only; budgets count by the database's clock (TODAY, MONTH)."""
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


# The tenant's limits and its counters as the reservations see them (no counters row
# yet, or a row of an earlier day or month, counts as nothing spent), and whether a
# limit is already spent: the submit's check. Shared by `state` and by the submit's
# insert, which folds the check into its one statement (aijobs/jobs/transitions.py).
STATE_COLUMNS = (
    "budget_daily_limit",
    "budget_day_spent",
    "budget_day_reserved",
    "budget_monthly_limit",
    "budget_month_spent",
    "budget_month_reserved",
)
STATE_SELECT = f"""
    SELECT t.daily_budget_usd AS budget_daily_limit,
           CASE WHEN c.day = {TODAY} THEN c.day_spent ELSE 0 END AS budget_day_spent,
           coalesce(c.day_reserved, 0) AS budget_day_reserved,
           t.monthly_budget_usd AS budget_monthly_limit,
           CASE WHEN c.month = {MONTH} THEN c.month_spent ELSE 0 END AS budget_month_spent,
           coalesce(c.month_reserved, 0) AS budget_month_reserved
    FROM tenants t LEFT JOIN budget_counters c ON c.tenant_id = t.id
    WHERE t.id = :tenant_id
"""
# Over a limit: that period's spend has reached it (reservations do not refuse a submit).
SPENT_SQL = """(
    (budget_daily_limit IS NOT NULL AND budget_day_spent >= budget_daily_limit)
    OR (budget_monthly_limit IS NOT NULL AND budget_month_spent >= budget_monthly_limit)
)"""
_STATE = text(STATE_SELECT)


def periods_of(row: Mapping[str, Any]) -> tuple[PeriodState, PeriodState]:
    """(daily, monthly) from a row carrying STATE_COLUMNS."""
    return (
        PeriodState(
            row["budget_daily_limit"],
            Decimal(row["budget_day_spent"] or 0),
            Decimal(row["budget_day_reserved"]),
        ),
        PeriodState(
            row["budget_monthly_limit"],
            Decimal(row["budget_month_spent"] or 0),
            Decimal(row["budget_month_reserved"]),
        ),
    )


def state(conn: Connection, tenant_id: uuid.UUID) -> tuple[PeriodState, PeriodState]:
    """(daily, monthly) as the counters the reservations use see them."""
    return periods_of(dict(conn.execute(_STATE, {"tenant_id": tenant_id}).mappings().one()))


def refuse_spent(daily: PeriodState, monthly: PeriodState) -> None:
    """402 at submit when a period's spend has already reached its limit (SPENT_SQL)."""
    for name, period in (("daily", daily), ("monthly", monthly)):
        if period.limit is not None and period.spent >= period.limit:
            BUDGET_REJECTIONS.labels("submit").inc()
            raise BudgetExceeded(
                f"the {name} budget of {usd(period.limit)} USD is spent",
                extra={"budget": period.as_json()},
            )


def refuse_if_over(conn: Connection, tenant_id: uuid.UUID) -> None:
    """402 at submit for a tenant whose spend has already reached a limit."""
    refuse_spent(*state(conn, tenant_id))


# Recounting a tenant's counters from the ledger (the attempts), when its budget is set
# or changed: a budget set in the middle of a day counts what that day already spent.
# Run in the transaction that changes the limits, in this order: the counters row is
# locked first (claims and settles of held calls wait for the commit); calls in flight
# that hold no reservation (claimed while the tenant had no budget) are made to hold
# one, so their settle adds their cost and releases it; then spent is the ledger's sum
# of settled calls in the period, and reserved the reservations of calls in flight.
_ENSURE_COUNTERS = text(
    f"""
    INSERT INTO budget_counters (tenant_id, day, day_spent, day_reserved, month,
                                 month_spent, month_reserved)
    VALUES (:tenant_id, {TODAY}, 0, 0, {MONTH}, 0, 0)
    ON CONFLICT (tenant_id) DO NOTHING
    """
)
_LOCK_COUNTERS = text("SELECT 1 FROM budget_counters WHERE tenant_id = :tenant_id FOR UPDATE")
_HOLD_IN_FLIGHT = text(
    """
    UPDATE attempts SET budget_held = true
    WHERE tenant_id = :tenant_id AND outcome = 'started' AND NOT budget_held
    """
)
_RECOUNT = text(
    f"""
    WITH ledger AS (
        SELECT coalesce(sum(cost_usd) FILTER (WHERE outcome <> 'started'
                                                AND started_at >= {_DAY_START}), 0) AS day,
               coalesce(sum(cost_usd) FILTER (WHERE outcome <> 'started'), 0) AS month,
               coalesce(sum(reserved_usd) FILTER (WHERE outcome = 'started'
                                                    AND budget_held), 0) AS held
        FROM attempts
        WHERE tenant_id = :tenant_id
          AND (started_at >= {_MONTH_START} OR outcome = 'started')
    )
    UPDATE budget_counters c SET day = {TODAY}, month = {MONTH},
           day_spent = l.day, month_spent = l.month,
           day_reserved = l.held, month_reserved = l.held
    FROM ledger l
    WHERE c.tenant_id = :tenant_id
    """
)


def ensure_counters(conn: Connection, tenant_id: uuid.UUID) -> None:
    """Every tenant has its counters row: reservations update it, never create it."""
    conn.execute(_ENSURE_COUNTERS, {"tenant_id": tenant_id})


def recount(conn: Connection, tenant_id: uuid.UUID) -> None:
    """Set the tenant's counters from the ledger of the current UTC day and month (in
    the transaction that set its budget)."""
    params = {"tenant_id": tenant_id}
    ensure_counters(conn, tenant_id)
    conn.execute(_LOCK_COUNTERS, params)
    conn.execute(_HOLD_IN_FLIGHT, params)
    conn.execute(_RECOUNT, params)
