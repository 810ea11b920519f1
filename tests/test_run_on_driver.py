"""aijobs.db.run_on_driver: a statement run on the psycopg connection directly fails
as SQLAlchemy's execute would, and a dead connection does not go back to the pool."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, text

from aijobs.db import DriverStatement, autocommit, run_on_driver
from tests.conftest import Services


def test_parameters_and_rows(services: Services) -> None:
    statement = DriverStatement(text("SELECT :a::int + :b::int AS total, 'x'::text AS t"))
    with autocommit() as conn:
        assert run_on_driver(conn, statement, {"a": 2, "b": 3}) == {"total": 5, "t": "x"}


def test_a_statement_error_is_sqlalchemys_and_hides_its_parameters(services: Services) -> None:
    statement = DriverStatement(text("SELECT 1 / :zero::int AS x"))
    with autocommit() as conn:
        with pytest.raises(exc.DataError) as raised:
            run_on_driver(conn, statement, {"zero": 0})
        assert "division by zero" in str(raised.value)
        assert not raised.value.connection_invalidated
        # The connection is still good.
        assert run_on_driver(conn, DriverStatement(text("SELECT 1 AS one")), {}) == {"one": 1}


def test_a_dead_connection_is_invalidated(services: Services) -> None:
    with autocommit() as conn:
        pid = run_on_driver(conn, DriverStatement(text("SELECT pg_backend_pid() AS p")), {})
        assert pid is not None
        with autocommit() as other:
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid["p"]})
        with pytest.raises(exc.OperationalError) as raised:
            run_on_driver(conn, DriverStatement(text("SELECT 1 AS one")), {})
        assert raised.value.connection_invalidated
    with autocommit() as conn:  # the pool hands out a live connection
        assert run_on_driver(conn, DriverStatement(text("SELECT 1 AS one")), {}) == {"one": 1}


def test_a_percent_sign_is_refused() -> None:
    with pytest.raises(ValueError, match="%"):
        DriverStatement(text("SELECT '100%'"))
