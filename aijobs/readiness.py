"""Readiness: the database answers with the schema at head, and the broker answers.
The API serves it at /readyz; each worker on its metrics port."""

from __future__ import annotations

import redis
from sqlalchemy import text

from aijobs.db import get_engine
from aijobs.settings import get_settings


def checks() -> dict[str, str]:
    # Alembic's import is a tenth of a second: paid by the first check, not every boot.
    from aijobs.migrate import head_revision

    result: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        head = head_revision()
        result["database"] = "ok"
        result["migrations"] = "ok" if current == head else f"at {current}, head is {head}"
    except Exception as exc:
        result["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client = redis.Redis.from_url(
            get_settings().effective_broker_url, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
        client.close()
        result["broker"] = "ok"
    except Exception as exc:
        result["broker"] = f"unreachable: {type(exc).__name__}"
    return result
