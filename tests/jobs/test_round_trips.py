"""Round trips per job, counted (not timed), so they cannot grow silently: a submit is
one statement, a job run is two (the claim and the settle), each its own transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from aijobs.db import get_engine, session_scope
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.submission import submit
from aijobs.settings import get_settings
from aijobs.tenants.service import create_key
from tests.conftest import Services
from worker.runner import Started, claim, complete


@contextmanager
def counted() -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # In autocommit a statement is its own transaction: no BEGIN or COMMIT round
        # trip around it. Anything else is marked, so the assertions below see it.
        autocommit = conn.connection.driver_connection.autocommit
        statements.append(statement.split()[0].upper() + ("" if autocommit else " (in BEGIN)"))

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


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
