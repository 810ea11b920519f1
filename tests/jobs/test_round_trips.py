"""Round trips per job, counted (not timed), so they cannot grow silently: a submit is
one statement, a job run is two (the claim and the settle), each its own transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from unittest import mock

import psycopg
import pytest
from sqlalchemy import text

from aijobs.billing.budget import BudgetExceeded
from aijobs.db import autocommit, session_scope
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.submission import submit, submit_new
from aijobs.jobs.view import VIEW_COLUMNS
from aijobs.settings import get_settings
from aijobs.tenants.service import create_key
from tests.conftest import Services
from worker.runner import Started, claim, complete


@contextmanager
def counted() -> Iterator[list[str]]:
    """The statements sent, at the driver (SQLAlchemy's and those run on the driver
    directly: aijobs.db.run_on_driver)."""
    statements: list[str] = []
    original = psycopg.Cursor.execute

    def execute(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        # In autocommit a statement is its own transaction: no BEGIN or COMMIT round
        # trip around it. Anything else is marked, so the assertions below see it.
        autocommit = cursor.connection.autocommit
        statements.append(str(query).split()[0].upper() + ("" if autocommit else " (in BEGIN)"))
        return original(cursor, query, *args, **kwargs)

    with mock.patch.object(psycopg.Cursor, "execute", execute):
        yield statements


def test_statements_per_submit_and_per_job(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "sim_latency_s", 0.0)
    with session_scope() as session:
        tenant = create_key(session, f"rt-{uuid.uuid4().hex[:8]}")
        tenant_id = session.execute(
            text("SELECT id FROM tenants WHERE name = :n"), {"n": tenant.tenant}
        ).scalar_one()
    request = JobRequest.model_validate(
        {"model": "sim/echo", "messages": [{"role": "user", "content": uuid.uuid4().hex}]}
    )
    with autocommit() as conn:  # the autocommit pool's first connect asks the server a few
        conn.execute(text("SELECT 1"))  # things once (version, settings): not per job
    with counted() as statements, session_scope() as session:
        job_id = submit(session, tenant_id, request).row["id"]
    assert statements == ["WITH"], statements  # cache look-up and insert in one, autocommit

    with counted() as statements:
        started = claim(job_id, "round-trips")
        assert isinstance(started, Started)
        assert asyncio.run(complete(started, "round-trips")) == "succeeded"
    assert statements == ["WITH", "WITH"], statements  # claim+reserve+record, settle

    with counted() as statements:
        assert claim(job_id, "round-trips") == "skipped"  # a redelivered message
    assert statements == ["WITH"], statements


def _budgeted_tenant(daily_budget: Decimal, monthly_budget: Decimal) -> uuid.UUID:
    with session_scope() as session:
        issued = create_key(
            session,
            f"rt-{uuid.uuid4().hex[:8]}",
            daily_budget=daily_budget,
            monthly_budget=monthly_budget,
        )
        tenant_id: uuid.UUID = session.execute(
            text("SELECT id FROM tenants WHERE name = :n"), {"n": issued.tenant}
        ).scalar_one()
    return tenant_id


def _chat() -> JobRequest:
    return JobRequest.model_validate(
        {"model": "sim/echo", "messages": [{"role": "user", "content": uuid.uuid4().hex}]}
    )


def _jobs_of(tenant_id: uuid.UUID) -> int:
    with session_scope() as session:
        count: int = session.execute(
            text("SELECT count(*) FROM jobs WHERE tenant_id = :t"), {"t": tenant_id}
        ).scalar_one()
    return count


def test_a_budgeted_submit_is_one_statement_too(services: Services) -> None:
    """The budget's check at submit is folded into the insert: no BEGIN, no COMMIT, no
    statement of its own."""
    tenant_id = _budgeted_tenant(daily_budget=Decimal(5), monthly_budget=Decimal(50))
    with counted() as statements, session_scope() as session:
        submitted = submit(session, tenant_id, _chat(), budgeted=True)
    assert statements == ["WITH"], statements
    assert submitted.publish and submitted.row["status"] == "queued"
    assert set(submitted.row) == {*VIEW_COLUMNS, "leader_id", "saved_usd"}
    # The API's submit without an Idempotency-Key: the same, with no Session.
    with counted() as statements:
        again = submit_new(tenant_id, _chat(), budgeted=True)
    assert statements == ["WITH"], statements
    assert again.publish and set(again.row) == set(submitted.row)


@pytest.mark.parametrize(
    ("spent_sql", "period"),
    [
        ("day_spent = 5", "daily"),
        ("month_spent = 50", "monthly"),
        ("day_spent = 7, month_spent = 60", "daily"),  # both spent: the day is named
    ],
)
def test_the_folded_budget_check_refuses_a_spent_limit(
    services: Services, spent_sql: str, period: str
) -> None:
    tenant_id = _budgeted_tenant(daily_budget=Decimal(5), monthly_budget=Decimal(50))
    with session_scope() as session:
        session.execute(
            text(f"UPDATE budget_counters SET {spent_sql} WHERE tenant_id = :t"),
            {"t": tenant_id},
        )
    with (
        pytest.raises(BudgetExceeded, match=f"the {period} budget") as refused,
        counted() as statements,
        session_scope() as session,
    ):
        submit(session, tenant_id, _chat(), budgeted=True)
    assert statements == ["WITH"], statements
    assert refused.value.extra["budget"]["remaining"] == "0"
    assert _jobs_of(tenant_id) == 0  # nothing written


def test_the_folded_budget_check_counts_only_the_current_period(services: Services) -> None:
    """Counters left on an earlier day and month count nothing spent; reservations in
    flight never refuse a submit (the claim waits or refuses)."""
    tenant_id = _budgeted_tenant(daily_budget=Decimal(5), monthly_budget=Decimal(50))
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE budget_counters SET day = day - 40, day_spent = 9,"
                " month = (month - interval '2 months')::date, month_spent = 90,"
                " day_reserved = 9, month_reserved = 90 WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        )
    with session_scope() as session:
        submitted = submit(session, tenant_id, _chat(), budgeted=True)
    assert submitted.row["status"] == "queued"
    assert _jobs_of(tenant_id) == 1
