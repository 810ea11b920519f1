"""Engine and session factory; sessions commit only at the edges (request, task)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Connection, Engine, TextClause, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from aijobs.settings import get_settings


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return create_engine(
        settings.required_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping: it costs a round trip per checkout on every job and request.
        pool_recycle=1800,
        # A database error's text (logged, sent to Sentry) must not carry the values
        # bound to it: those are prompts, results, webhook URLs.
        hide_parameters=True,
    )


@lru_cache
def _autocommit_engine() -> Engine:
    """A pool of its own whose connections stay in autocommit: a checkout then sets no
    isolation level and a return resets nothing (there is never a transaction to roll
    back). On the drain benchmark the worker went from about 300 to 370 jobs/s."""
    settings = get_settings()
    return create_engine(
        settings.required_database_url,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=1800,
        hide_parameters=True,
    )


# Threads that run many short statements (the worker's database threads) keep their
# autocommit connection instead of taking one from the pool for each: a checkout and
# a return cost the worker more CPU per job than the statement's own driver work.
_held = threading.local()
HELD_FOR_S = 1800.0  # as pool_recycle: a held connection is replaced after this long


def hold_connections() -> None:
    """From now on `autocommit()` in this thread reuses one connection (a thread
    pool's initializer)."""
    _held.enabled = True


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A connection where each statement is its own transaction: one round trip for a
    single-statement change (the worker's claim and settle are written that way)."""
    if not getattr(_held, "enabled", False):
        with _autocommit_engine().connect() as pooled:
            yield pooled
        return
    conn: Connection | None = getattr(_held, "conn", None)
    if conn is None or conn.closed or conn.invalidated or time.monotonic() > _held.until:
        _drop_held()
        conn = _autocommit_engine().connect()
        _held.conn, _held.until = conn, time.monotonic() + HELD_FOR_S
    try:
        yield conn
    except BaseException:
        _drop_held()  # whatever broke, the next statement starts on a fresh connection
        raise
    if conn.in_transaction():
        conn.rollback()  # autocommit: no round trip, only SQLAlchemy's own state


def _drop_held() -> None:
    conn: Connection | None = getattr(_held, "conn", None)
    _held.conn = None
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class DriverStatement:
    """A text() statement for `run_on_driver`: its SQL in psycopg's %(name)s style, and
    its JSONB parameters (wrapped for the driver as SQLAlchemy's JSONB binds would)."""

    def __init__(self, statement: TextClause) -> None:
        sql = statement.text
        if "%" in sql:
            raise ValueError("a driver statement must not contain %")
        self.sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
        # name -> None stays SQL NULL (JSONB(none_as_null=True)), else JSON null
        self.jsonb = {
            name: bool(getattr(bind.type, "none_as_null", False))
            for name, bind in statement._bindparams.items()
            if isinstance(bind.type, JSON)
        }

    def params(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        if not self.jsonb:
            return params
        wrapped = dict(params)
        for name, none_as_null in self.jsonb.items():
            value = wrapped.get(name)
            if isinstance(value, Jsonb) or (value is None and none_as_null):
                continue
            wrapped[name] = Jsonb(value)
        return wrapped


def run_on_driver(
    conn: Connection, statement: DriverStatement, params: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Run one statement straight on the psycopg connection under `conn` (in its
    transaction, or autocommit): its first row as a dict. For the hottest statements
    (the submit's, the worker's claim and settle), where SQLAlchemy's execution and
    result set-up cost more CPU than the driver's work (docs/scaling.md). A database
    error is raised as conn.execute raises it (a SQLAlchemy DBAPIError, parameters
    hidden), and a dead connection is invalidated, not pooled again."""
    row = _on_driver(conn, statement, params, dict_row)
    return None if row is None else dict(row)


def row_on_driver(
    conn: Connection, statement: DriverStatement, params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """`run_on_driver`, its first row as a tuple (for unnamed or repeated columns)."""
    row = _on_driver(conn, statement, params, tuple_row)
    return None if row is None else tuple(row)


def _on_driver(
    conn: Connection, statement: DriverStatement, params: Mapping[str, Any], factory: Any
) -> Any:
    pooled = conn.connection
    driver = pooled.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor(row_factory=factory) as cursor:
            cursor.execute(statement.sql, statement.params(params))
            return cursor.fetchone()
    except psycopg.Error as exc:
        error: Any = exc  # psycopg's, which SQLAlchemy's typing calls DBAPIModule.Error
        gone = conn.dialect.is_disconnect(error, pooled, None)
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement.sql,
            None,
            exc,
            psycopg.Error,
            hide_parameters=True,
            connection_invalidated=gone,
            dialect=conn.dialect,
        ) from exc
