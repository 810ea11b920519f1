"""Alembic environment: the URL comes from aijobs settings unless alembic.ini names one."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from aijobs.models import Base
from aijobs.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().required_database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            # Two processes migrating at once (api and worker starting together) take turns.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7349821)")
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
