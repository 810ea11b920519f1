"""Engine and session factory; sessions commit only at the edges (request, task)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Connection, Engine, create_engine
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
    return get_engine().execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def autocommit() -> Iterator[Connection]:
    """A connection where each statement is its own transaction: one round trip for a
    single-statement change (the worker's claim and settle are written that way)."""
    with _autocommit_engine().connect() as conn:
        yield conn


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
